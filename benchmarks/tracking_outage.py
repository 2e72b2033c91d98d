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
    "name": "outage", "dataset": {"name": "digits"}, "training": {"epochs": 60, "batch_size": 32},
    "mentor": {"name": "Mentor", "architecture": "c-mp-c-mp-fc2"},
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
    parser.add_argument("--down", type=float, default=30.0, help="seconds the server is down")
    parser.add_argument("--after", type=float, default=20.0, help="seconds into the sweep it is killed")
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
                                  str(folder / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        time.sleep(args.after)
        os.killpg(mlflow.pid, signal.SIGKILL)
        down_at = time.time()
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
        for trial in (folder / "out" / "trials").glob("*/trial.json"):
            history = json.loads(trial.read_text())["student"]["history"]
            for before, after in zip(history, history[1:]):
                seconds = (after["ended_ms"] - before["ended_ms"]) / 1000
                (inside if down_at <= after["ended_ms"] / 1000 <= up_at else outside).append(seconds)
        if inside and outside:
            a, b = statistics.median(inside), statistics.median(outside)
            print(f"students' median epoch: {a:.3f} s while the server was down ({len(inside)} epochs), "
                  f"{b:.3f} s otherwise ({len(outside)}): {a / b:.2f}×")


if __name__ == "__main__":
    main()
