"""A sweep submitted with the real `ray job submit` to a real two-node cluster
(`ray start` twice, token authentication on): trials land on both nodes, read
and write one shared storage path, and are tracked in MLflow."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from .conftest import ROOT

RAY = str(Path(sys.executable).parent / "ray")
STUDENTS = ["S2", "S3", "S4", "S5"]
SPACE = {
    "name": "job", "dataset": {"name": "digits"}, "training": {"epochs": 2},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": s, "architecture": "c-fc", "width": int(s[1:])} for s in STUDENTS],
    # each training worker needs one "accel" (a stand-in for a GPU) and one CPU: one per node at a time
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1, "custom_per_worker": {"accel": 1}},
    "fault_tolerance": {"checkpoint_every": 0},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(args: list[str], env: dict) -> subprocess.Popen:
    """A node of its own ports (the test session's local Ray holds the default agent ports)."""
    own = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
           "--node-ip-address=127.0.0.1", "--num-cpus=2", '--resources={"accel": 1}']
    return subprocess.Popen([RAY, "start", "--block", *args, *own], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for(check, what: str, tries: int = 240) -> None:
    for _ in range(tries):
        try:
            if check():
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def dashboard(address: str, path: str, token: str) -> str:
    """GET from the head's dashboard with the cluster's token (cheaper to poll than the `ray` CLI)."""
    request = urllib.request.Request(f"{address}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_a_submitted_sweep_spreads_over_two_nodes_and_shares_storage(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    address = f"http://127.0.0.1:{dash}"
    nodes = [ray_start(["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                        "--include-dashboard=true", f"--ray-client-server-port={free_port()}"], env)]
    storage, space = tmp_path / "storage", tmp_path / "job.yaml"
    out = storage / "job"  # STORAGE/NAME
    space.write_text(yaml.safe_dump(SPACE))
    try:
        wait_for(lambda: "[" in dashboard(address, "/api/jobs/", token.read_text()), "the job server")
        # Its own temporary folder, as on another machine: nodes sharing one would share (and clean up)
        # each other's copies of the job's working directory.
        node_tmp = tempfile.mkdtemp(prefix="ray-node2-", dir="/tmp")  # short: Unix socket paths are limited
        nodes.append(ray_start([f"--address=127.0.0.1:{gcs}", f"--node-manager-port={free_port()}",
                                f"--object-manager-port={free_port()}", f"--temp-dir={node_tmp}"], env))
        wait_for(lambda: dashboard(address, "/api/v0/nodes", token.read_text()).count('"ALIVE"') == 2, "two nodes")
        submit = None
        for _ in range(10):  # the job agent may come up a little after the job server
            # Without --no-wait: follows the job's logs and exits non-zero if the job fails.
            submit = subprocess.run([RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
                                     sys.executable, "-m", "deepmimic.cli", "sweep", str(space), "--storage", str(storage)],
                                    env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "succeeded" in submit.stdout and "student trials: 4 (4 run, 0 already done)" in submit.stdout

        records = [json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")]
        assert sorted(r["student"]["name"] for r in records) == STUDENTS
        assert len({r["student"]["node_id"] for r in records}) == 2  # both nodes trained students
        for r in records:  # each trial read its mentor's soft labels and wrote its checkpoint on the shared path
            assert r["student"]["checkpoint"].startswith(str(out))
            assert r["mentor"]["checkpoint"].startswith(str(storage / "cache"))
        assert len((out / "results.csv").read_text().strip().splitlines()) == 1 + 4
        client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
        assert len(runs) == 1 + 1 + 4  # the sweep, the mentor, four students

        wrong = tmp_path / "wrong_token"
        wrong.write_text(uuid.uuid4().hex)
        refused = subprocess.run([RAY, "job", "list", "--address", address],
                                 env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True, text=True)
        assert refused.returncode != 0  # the job server refuses a wrong token
    finally:
        for node in reversed(nodes):  # SIGKILL: a graceful `ray stop` of a node takes half a minute here
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=60)
