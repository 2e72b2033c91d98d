"""A sweep submitted with the real `ray job submit` to a real head with token authentication."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from .conftest import ROOT, free_port, wait_for

RAY = str(Path(sys.executable).parent / "ray")


def dashboard(address: str, path: str, token: str) -> str:
    """GET from the head's dashboard with the cluster's token."""
    request = urllib.request.Request(f"{address}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def bare_python(folder: Path) -> str:
    """A Python with this environment's libraries (Ray, PyTorch, MLflow…) but not the project: a venv whose
    one `.pth` line names our site-packages, where the project's own editable-install hook is then not run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    next(folder.glob("lib/python*/site-packages")).joinpath("base.pth").write_text(site + "\n")
    return str(folder / "bin" / "python")


def test_sweep_runs_under_ray_job_submit_on_a_cluster_without_the_project(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex)
    python = bare_python(tmp_path / "cluster-env")
    assert subprocess.run([python, "-c", "import ray, torch, mlflow"]).returncode == 0
    assert subprocess.run([python, "-c", "import deepmimic"], capture_output=True).returncode != 0
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    # The cluster's nodes and the job's driver run the bare Python (`python` on the head's PATH).
    cluster_env = {**env, "PATH": f"{Path(python).parent}:{env['PATH']}"}
    # The shipped runtime environment less its `pip` list: this Python has those libraries already.
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(
        (ROOT / "clusters" / "runtime_env.yaml").read_text()).items() if k != "pip"}))
    gcs, dash = free_port(), free_port()
    # A temp folder of its own: the job's driver is given the address in `<temp>/ray_current_cluster`, which in
    # /tmp/ray names whichever cluster on the machine started last (the other pytest worker's, at times).
    # Short, under /tmp: Ray's sockets live in it, and a socket's path may not pass 107 bytes.
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = subprocess.Popen(
        [python, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={gcs}",
         "--node-ip-address=127.0.0.1", f"--temp-dir={ray_temp}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2",
         f"--ray-client-server-port={free_port()}", "--include-dashboard=true",
         # Own agent ports: the test session's local Ray already holds the default ones (52365, …).
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"],
        env=cluster_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    storage, space = tmp_path / "storage", tmp_path / "job.yaml"
    out = storage / "job"  # STORAGE/NAME
    space.write_text(yaml.safe_dump({
        "name": "job", "dataset": {"name": "digits"}, "training": {"epochs": 2},
        "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
        "students": [{"name": "A", "architecture": "c-fc", "width": 4},
                     {"name": "B", "architecture": "c-fc", "width": 6}],
        "resources": {"cpus_per_worker": 0.5, "threads_per_worker": 1},
        "fault_tolerance": {"checkpoint_every": 0},
        "grid": {"student": ["A", "B"]},
    }))
    try:
        wait_for(lambda: "[" in dashboard(address, "/api/jobs/", token.read_text()), "the job server")
        for _ in range(10):  # the job agent may come up a little after the job server
            submit = subprocess.run(
                [RAY, "job", "submit", "--address", address, "--working-dir", ".", "--runtime-env",
                 str(runtime_env), "--no-wait", "--", "python", "-m", "deepmimic.cli", "sweep", str(space),
                 "--storage", str(storage)],
                env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
            if "No available agent" not in submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        job_id = re.search(r"Job '([^']+)' submitted successfully", submit.stdout).group(1)
        # Poll the job over HTTP (each `ray` CLI call costs seconds of CPU the sweep needs), then ask
        # `ray job status` and `ray job logs` as a user would.
        wait_for(lambda: json.loads(dashboard(address, f"/api/jobs/{job_id}", token.read_text()))["status"]
                 in ("SUCCEEDED", "FAILED", "STOPPED"), "the job", timeout=600)
        status = subprocess.run([RAY, "job", "status", "--address", address, job_id], env=env,
                                capture_output=True, text=True).stdout.lower()
        logs = subprocess.run([RAY, "job", "logs", "--address", address, job_id], env=env,
                              capture_output=True, text=True).stdout
        assert "succeeded" in status, status + logs[-3000:]
        assert "student trials: 2 (2 run, 0 already done)" in logs
        assert "cluster: 1 node(s), each with Ray 2.60.0, PyTorch 2.14.1, torchvision 0.29.1, deepmimic 0.1.0" in logs
        rows = (out / "results.csv").read_text().strip().splitlines()
        assert len(rows) == 3
        client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
        assert len(runs) == 1 + 1 + 2  # the sweep, the mentor, two students
        assert json.loads((out / "sweep.json").read_text())["counts"]["mentors_trained"] == 1
        assert len(list(storage.glob("cache/mentors/*/mentor.json"))) == 1
        wrong = tmp_path / "wrong_token"
        wrong.write_text(uuid.uuid4().hex)
        refused = subprocess.run([RAY, "job", "list", "--address", address],
                                 env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True, text=True)
        assert refused.returncode != 0  # the job server refuses a wrong token
    finally:  # SIGKILL: a graceful stop of the head takes half a minute here
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        shutil.rmtree(ray_temp, ignore_errors=True)
