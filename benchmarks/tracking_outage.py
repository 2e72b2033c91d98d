"""A sweep tracked live to an `mlflow server` over HTTP whose server is killed mid-sweep and started again on the
same port and store `--down` seconds later. Prints the sweep's exit, each training run's epochs in MLflow (every
epoch once?), and the median epoch's seconds while the server was down against the rest of the same runs.

    .venv/bin/python benchmarks/tracking_outage.py --down 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml

from common import machine

SPACE = {
    # students long enough (about a minute each here) that the outage falls inside their training
    "name": "outage", "dataset": {"name": "digits"}, "training": {"epochs": 1500, "batch_size": 32},
    "mentor": {"name": "Mentor", "architecture": "c-mp-c-mp-fc2", "training": {"epochs": 60}},
    "students": [{"name": "Student-A", "architecture": "c-mp-c-mp-fc2"},
                 {"name": "Student-B", "architecture": "c-mp-fc2"}],
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1}, "fault_tolerance": {"checkpoint_every": 0},
    "grid": {"student": ["Student-A", "Student-B"]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(folder: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on `port` over the store in `folder`, once it answers."""
    args = [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{folder / 'store.db'}", "--artifacts-destination",
            str(folder / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit("tracking_outage: the MLflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--down", type=float, default=30.0, help="seconds the server is down (< 0: for good)")
    parser.add_argument("--after", type=float, default=30.0, help="seconds into the sweep it is killed")
    args = parser.parse_args()
    print(machine(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        folder, port = Path(tmp), free_port()
        space = folder / "outage.yaml"
        space.write_text(yaml.safe_dump(SPACE))
        mlflow = server(folder, port)
        env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
               "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        begun = time.time()
        sweep = subprocess.Popen([sys.executable, "-m", "deepmimic.cli", "sweep", str(space), "--out",
                                  str(folder / "out"), "--cache", str(folder / "cache")], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        time.sleep(args.after)
        os.killpg(mlflow.pid, signal.SIGKILL)
        down_at = time.time()
        if args.down < 0:  # never back: what the sweep says, and how long it takes to say it
            out, _ = sweep.communicate(timeout=1800)
            errors = [line for line in out.splitlines() if line.startswith("deepmimic: error")]
            frames = sum(line.lstrip().startswith('File "') for line in out.splitlines())
            print(f"server killed {down_at - begun:.0f} s in, never back: sweep exit {sweep.returncode} after "
                  f"{time.time() - begun:.0f} s, {out.count('Traceback')} tracebacks and {frames} stack frames in "
                  "its output; its error line:\n" + "\n".join(errors))
            print(f"trials finished: {len(list((folder / 'out' / 'trials').glob('*/trial.json')))}, results.csv "
                  f"{'written' if (folder / 'out' / 'results.csv').exists() else 'missing'}")
            return
        time.sleep(args.down)
        mlflow = server(folder, port)
        up_at = time.time()
        out, _ = sweep.communicate(timeout=1800)
        ended = time.time()
        print(f"sweep exit {sweep.returncode} after {ended - begun:.0f} s; server down {down_at - begun:.0f} s to "
              f"{up_at - begun:.0f} s in")
        if sweep.returncode != 0:
            print(out[-3000:])
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"http://127.0.0.1:{port}")
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        print("| run | status | epochs in MLflow | each once |")
        print("|---|---|---|---|")
        for run in sorted(runs, key=lambda r: r.info.run_name):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_loss")]
            print(f"| {run.info.run_name} | {run.info.status} | {len(steps)} | "
                  f"{sorted(steps) == list(range(1, len(steps) + 1))} |")
        os.killpg(mlflow.pid, signal.SIGTERM)
        inside, outside = [], []
        runs = [json.loads(t.read_text()) for t in (folder / "out" / "trials").glob("*/trial.json")]
        histories = [r["student"]["history"] for r in runs] + [runs[0]["mentor"]["history"]] if runs else []
        spans = [(h[0]["ended_ms"] / 1000 - begun, h[-1]["ended_ms"] / 1000 - begun) for h in histories if h]
        print("training runs' epochs ended between (s into the sweep): "
              + ", ".join(f"{a:.0f}-{b:.0f}" for a, b in spans))
        for history in histories:
            for before, after in zip(history, history[1:]):
                seconds = (after["ended_ms"] - before["ended_ms"]) / 1000
                (inside if down_at <= after["ended_ms"] / 1000 <= up_at else outside).append(seconds)
        if inside and outside:
            a, b = statistics.median(inside), statistics.median(outside)
            print(f"median epoch: {a:.3f} s while the server was down ({len(inside)} epochs), "
                  f"{b:.3f} s otherwise ({len(outside)}): {a / b:.2f}×")


if __name__ == "__main__":
    main()
