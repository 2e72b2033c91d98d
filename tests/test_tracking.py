"""MLflow tracking against a real local MLflow store (SQLite, as a sweep uses by default)."""

from __future__ import annotations

from deepmimic.core.results import Counts
from deepmimic.tracking import Tracker, default_uri

from .results_fixtures import mentor, record


def tracker(tmp_path) -> Tracker:
    return Tracker(default_uri(str(tmp_path)), "tiny", str(tmp_path), str(tmp_path / "mlartifacts"))


def test_a_student_run_is_nested_with_its_metrics_params_and_plots(tmp_path):
    t = tracker(tmp_path)
    t.log_student(record("A", 0.88, grid={"seed": 0}))
    (run,) = t.client.search_runs([t.experiment_id], "tags.`deepmimic.role` = 'student'")
    assert run.data.tags["mlflow.parentRunId"] == t.parent and run.info.run_name == "student:A"
    assert run.data.metrics["test_accuracy"] == 0.88 and run.data.params["architecture"] == "c-fc"
    history = t.client.get_metric_history(run.info.run_id, "epoch_test_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.88)]
    assert {a.path for a in t.client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/learning_curves.png", "plots/confusion_matrices.png"}


def test_a_resumed_sweep_logs_each_run_once(tmp_path):
    first = tracker(tmp_path)
    first.log_mentor("k1", {"seed": 0}, mentor())
    first.log_student(record("A", 0.88))
    again = tracker(tmp_path)  # a rerun of the same sweep finds its parent and runs by their keys
    again.log_mentor("k1", {"seed": 0}, mentor())
    again.log_student(record("A", 0.88))
    again.finish({"dataset": "digits"}, Counts(mentors=1, trials=1), [])
    runs = again.client.search_runs([again.experiment_id])
    assert again.parent == first.parent and len(runs) == 3  # sweep, mentor, student
    parent = again.client.get_run(again.parent)
    assert parent.data.tags["deepmimic.trials"] == "1" and parent.info.status == "FINISHED"
