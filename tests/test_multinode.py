"""A sweep on a simulated cluster (`ray.cluster_utils.Cluster`: each node its own raylet) that loses a node while
its trial trains and gains one: the lost trial resumes from its checkpoint on the new node, and every trial lands
once in `results.csv`, the trial folders and MLflow, on one storage path."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from .conftest import DEEPMIMIC, wait_for

EPOCHS = 800
SPACE = {
    "name": "lost_node",
    "dataset": {"name": "digits"},
    "training": {"epochs": 2},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": f"S{w}", "architecture": "c-fc", "width": w, "training": {"epochs": EPOCHS}}
                 for w in (2, 3)],
    # each training worker holds its node's one "accel" (a stand-in for a GPU): one trial a node at a time
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1, "custom_per_worker": {"accel": 1}},
    "trial_cpus": 0.25,
    "fault_tolerance": {"checkpoint_every": 10, "trial_retries": 2},
}
# The head declares a lost node dead after 3 missed checks 0.5 s apart (Ray's defaults: 5, 3 s apart).
FAST_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
              "health_check_failure_threshold": 3}


@pytest.fixture(scope="module")
def lost(tmp_path_factory):
    """The sweep, run as `deepmimic sweep` on a two-node cluster: once both students (one a node) have stored a
    checkpoint, a third node joins (idle: two trials at a time, the concurrency the sweep planned) and the second
    node's processes are killed (SIGKILL, no graceful stop)."""
    tmp = tmp_path_factory.mktemp("lost_node")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"accel": 1},
                                                            "_system_config": FAST_DEATH})
    second = cluster.add_node(num_cpus=2, resources={"accel": 1})
    try:
        cluster.wait_for_nodes()
        path, out = tmp / "lost_node.yaml", tmp / "shared" / "out"
        path.write_text(yaml.safe_dump(SPACE))
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        with open(tmp / "sweep.log", "w") as log:  # a file, not a pipe: the nodes' logs would fill a pipe
            proc = subprocess.Popen([*DEEPMIMIC, "sweep", str(path), "--out", str(out), "--cache",
                                     str(tmp / "shared" / "cache")], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            wait_for(lambda: len({p.parents[3] for p in out.glob(
                "trials/*/ray/student-*/checkpoint_epoch-*/_manifest.json")}) == 2, "both students' checkpoints", 240)
            # Joined only now: added before, it could take a trial the second node would have had, leaving
            # nothing on the node killed.
            third = cluster.add_node(num_cpus=2, resources={"accel": 1})
            assert proc.poll() is None
            killed_ms = time.time() * 1000
            cluster.remove_node(second, allow_graceful=False)
            proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
        log = (tmp / "sweep.log").read_text()
        assert proc.returncode == 0, log[-4000:]
        nodes = {"head": cluster.head_node.node_id, "lost": second.node_id, "added": third.node_id}
        yield out, nodes, f"{log[-3000:]}\nkilled at {killed_ms:.0f} ms"

    finally:
        cluster.shutdown()


def records(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("trials/*/trial.json"))]


def test_the_lost_trial_resumes_from_its_checkpoint_on_the_node_added(lost):
    out, nodes, log = lost
    (resumed,) = [r["student"] for r in records(out) if r["student"]["resumed_from_epoch"]]
    assert resumed["resumed_from_epoch"] % 10 == 0, log[-2000:]  # from a checkpoint, not from scratch
    # the head still trains the other student
    assert resumed["node_id"] == nodes["added"], (log, [(r["student"]["node_id"], r["student"]["started_ms"],
                                                      r["student"]["ended_ms"]) for r in records(out)])
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, EPOCHS + 1))


def test_no_trial_finished_on_the_lost_node_and_all_share_one_storage_path(lost):
    out, nodes, _ = lost
    rows = records(out)
    assert {r["student"]["node_id"] for r in rows} == {nodes["head"], nodes["added"]}
    for r in rows:  # each trial read its mentor's soft labels and wrote its table on the shared path
        assert r["student"]["checkpoint"].startswith(str(out))
        assert r["mentor"]["checkpoint"].startswith(str(out.parent / "cache"))


def test_every_trial_once_in_results_folders_and_mlflow(lost):
    out, _, _ = lost
    with open(out / "results.csv") as f:
        assert sorted(r["student"] for r in csv.DictReader(f)) == ["S2", "S3"]
    assert len(list(out.glob("trials/*/trial.json"))) == 2
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (experiment,) = [e.experiment_id for e in client.search_experiments() if e.name == "lost_node"]
    students = client.search_runs([experiment], "tags.`deepmimic.role` = 'student'")
    assert sorted(r.info.run_name for r in students) == ["S2", "S3"]
    for run in students:  # each epoch once: those logged live before the loss are not logged again
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_loss")]
        assert steps == list(range(1, EPOCHS + 1))
        assert run.info.status == "FINISHED"
