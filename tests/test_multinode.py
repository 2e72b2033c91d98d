"""A sweep on a simulated two-node cluster: trials land on both nodes and share one storage path."""

from __future__ import annotations

import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from deepmimic.config import SweepConfig, parse_experiment
from deepmimic.core import artifacts
from deepmimic.core.results import TrialRecord
from deepmimic.distributed.planning import plan, trial_file
from deepmimic.distributed.sweep import run_sweep, start_tracker
from deepmimic.tracking import default_uri

SPACE = {
    "name": "two_nodes",
    "dataset": {"name": "digits"},
    "training": {"epochs": 2},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    # two trials at once, each worker holding a node's one "accel": they must run on different nodes. Each
    # trains long enough (a few seconds) that the second trial's process has started before the first ends;
    # otherwise Tune may hand the second trial to the first one's reused process, on the same node.
    "students": [{"name": f"S{w}", "architecture": "c-fc", "width": w, "training": {"epochs": 80}} for w in (2, 3)],
    # each training worker needs one "accel" (a stand-in for a GPU) and one CPU: one per node at a time
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1, "custom_per_worker": {"accel": 1}},
    "trial_cpus": 0.25,
    "fault_tolerance": {"checkpoint_every": 0},
}


def test_trials_spread_over_two_nodes_and_share_storage(tmp_path):
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"accel": 1}})
    cluster.add_node(num_cpus=2, resources={"accel": 1})
    try:
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        base = parse_experiment(SPACE, "two_nodes", SweepConfig)
        storage = tmp_path / "shared"
        uri = default_uri(str(storage / "out"))
        tracked = start_tracker(uri, "two_nodes", str(storage / "out"), str(storage / "out" / "mlartifacts"))
        outcome = run_sweep(base, [({}, base)], str(storage / "out"), str(storage / "cache"), tracked)
        assert outcome.counts.trials_run == 2
        records = [TrialRecord.from_json(artifacts.read_json(trial_file(str(storage / "out"), k)))
                   for k in plan([({}, base)]).trials]
        assert {r.student.node_id for r in records} == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        for r in records:  # each trial read its mentor's soft labels and wrote its table on the shared path
            assert r.student.checkpoint.startswith(str(storage / "out"))
            assert r.mentor.checkpoint.startswith(str(storage / "cache"))
        client = MlflowClient(tracking_uri=uri)  # both nodes' trainings told the driver's node's tracker
        students = client.search_runs([outcome.experiment_id], "tags.`deepmimic.role` = 'student'")
        assert sorted(r.info.run_name for r in students) == ["S2", "S3"]
        for run in students:
            assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_loss")] == list(
                range(1, 81))
    finally:
        ray.shutdown()
        cluster.shutdown()
