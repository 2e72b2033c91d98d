"""Noisy-student generations through the real CLI on the session's Ray: a grid over `generations`, each generation
a cached mentor trained once, a nested MLflow run and a row of the report; the students distil from the last."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from .conftest import sweep

SPACE = {
    "name": "generations",
    "dataset": {"name": "digits"},
    "training": {"epochs": 3, "batch_size": 64, "shift": 1},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": "S", "architecture": "c-fc", "width": 8}],
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
    "fault_tolerance": {"checkpoint_every": 0},
    "grid": {"generations": [0, 1]},
}


def test_a_grid_over_generations_trains_each_once_and_reports_each(ray_local, tmp_path):
    proc = sweep(ray_local, tmp_path, SPACE, str(tmp_path / "out"), str(tmp_path / "cache"))
    assert "mentors: 2 (" in proc.stdout
    # one cache entry and one training run a mentor, though both points need generation 0: its own trial or
    # generation 1's makes it, the other waits on its lock (tests/test_shared_cache.py) and finds it made
    assert len(list((tmp_path / "cache").glob("mentors/*/ray/mentor-*"))) == 2
    made = {json.loads(p.read_text())["result"]["name"]: json.loads(p.read_text())
            for p in (tmp_path / "cache").glob("mentors/*/mentor.json")}
    assert sorted(made) == ["Mentor", "Mentor-g1"]
    trials = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("trials/*/trial.json")]
    assert sorted(t["mentor"]["name"] for t in trials) == ["Mentor", "Mentor-g1"]  # each student from its last

    report = (tmp_path / "out" / "report.md").read_text()
    for row in ("| Mentor | c-mp-fc2 | 17882 |", "| Mentor-g1 | c-mp-fc2 | 17882 |", "| S ← Mentor | c-fc |",
                "| S ← Mentor-g1 | c-fc |"):
        assert row in report, report

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("generations").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    nested = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    g1 = next(r for name, r in nested.items() if name.startswith("Mentor-g1"))
    assert g1.data.params["teacher"] == "Mentor" and g1.data.params["generation"] == "1"
    assert g1.data.metrics["test_accuracy"] == made["Mentor-g1"]["result"]["test_accuracy"]
