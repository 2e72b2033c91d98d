"""MLflow tracking against a real local MLflow store (SQLite, as a sweep uses by default)."""

from __future__ import annotations

from deepmimic.core.results import Counts, Epoch
from deepmimic.run_names import RunLabel
from deepmimic.tracking import KIND, KIND_TAG, Tracker, default_uri

from .results_fixtures import mentor, record


def tracker(tmp_path) -> Tracker:
    return Tracker(default_uri(str(tmp_path)), "tiny", str(tmp_path), str(tmp_path / "mlartifacts"))


def label(key: str = "student:A", name: str = "A · split 0.2") -> RunLabel:
    return RunLabel(key, key.split(":")[0], name, {"training.lr": 0.05, "split.mentor_ratio": 0.2},
                    {"split.mentor_ratio": "0.2"})


def test_a_student_run_is_nested_with_its_name_params_metrics_and_plots(tmp_path):
    t = tracker(tmp_path)
    t.log_student(label(), record("A", 0.88, grid={"seed": 0}))
    (run,) = t.client.search_runs([t.experiment_id], "tags.`deepmimic.role` = 'student'")
    assert run.data.tags["mlflow.parentRunId"] == t.parent and run.info.run_name == "A · split 0.2"
    assert run.data.tags["split.mentor_ratio"] == "0.2" and run.data.params["training.lr"] == "0.05"
    assert run.data.metrics["test_accuracy"] == 0.88 and run.data.params["parameters"] == "100"
    history = t.client.get_metric_history(run.info.run_id, "epoch_test_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.88)]
    assert {a.path for a in t.client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/learning_curves.png", "plots/confusion_matrices.png"}


def test_figures_drawn_where_the_model_trained_are_logged_as_they_are(tmp_path):
    import dataclasses

    from deepmimic import plots

    done = record("A", 0.88)
    drawn = plots.run_figures([done.mentor, done.student], str(tmp_path / "trial"))
    t = tracker(tmp_path)
    t.log_student(label(), dataclasses.replace(done, student=dataclasses.replace(done.student, figures=drawn)))
    (run,) = t.client.search_runs([t.experiment_id], "tags.`deepmimic.role` = 'student'")
    logged = t.client.download_artifacts(run.info.run_id, "plots/learning_curves.png", str(tmp_path))
    assert open(logged, "rb").read() == open(drawn[0], "rb").read()


def test_a_live_run_spans_its_training_and_logs_each_epoch_once(tmp_path):
    """Epochs arrive as they happen; a restarted training resends some (from its checkpoint, and the final
    logging sends the whole history again): each step is in the store once, and the duration is the training's."""
    t = tracker(tmp_path)
    t.started(label(), 1_000_000)
    t.epochs("student:A", [Epoch(1, 1.0, 0.5, 0.9, ended_ms=1_001_000)])
    run = t.runs["student:A"]
    assert t.client.get_run(run).info.status == "RUNNING"
    again = tracker(tmp_path)  # a resumed sweep's tracker, a restarted trial
    again.started(label(), 1_002_000, [Epoch(1, 1.0, 0.5, 0.9)])
    again.epochs("student:A", [Epoch(2, 0.8, 0.6, 0.8, ended_ms=1_003_000)])
    again.ended("student:A", 1_004_000)
    again.log_student(label(), record("A", 0.88))
    info = again.client.get_run(run).info
    assert again.runs["student:A"] == run and (info.start_time, info.end_time, info.status) == (
        1_000_000, 1_004_000, "FINISHED")
    assert [(m.step, m.timestamp) for m in again.client.get_metric_history(run, "epoch_train_loss")] == [
        (1, 1_001_000), (2, 1_003_000)]


def test_a_run_logged_after_its_training_keeps_the_trainings_times(tmp_path):
    """A run whose live start never reached the tracker (a mentor trained by an earlier sweep, calls lost) is
    opened at its end with its training's start, epoch and end times, not all at one moment."""
    import dataclasses

    done = record("A", 0.88)
    timed = dataclasses.replace(done.student, started_ms=2_000_000, ended_ms=2_009_000, history=tuple(
        dataclasses.replace(e, ended_ms=2_000_000 + 4000 * e.epoch) for e in done.student.history))
    t = tracker(tmp_path)
    t.log_student(label(), dataclasses.replace(done, student=timed))
    info = t.client.get_run(t.runs["student:A"]).info
    assert (info.start_time, info.end_time) == (2_000_000, 2_009_000)
    assert [m.timestamp for m in t.client.get_metric_history(info.run_id, "epoch_test_accuracy")] == [
        2_004_000, 2_008_000]


def test_a_methods_epoch_figures_are_logged_beside_the_loss(tmp_path):
    t = tracker(tmp_path)
    t.started(label(), 1_000_000)
    t.epochs("student:A", [Epoch(1, 1.0, train_stats={"kept_fraction": 0.75}, ended_ms=1_001_000)])
    assert [m.value for m in t.client.get_metric_history(t.runs["student:A"], "epoch_kept_fraction")] == [0.75]


def test_epochs_of_a_run_never_started_wait_for_its_final_logging(tmp_path):
    t = tracker(tmp_path)
    t.epochs("student:lost", [Epoch(1, 1.0)])
    assert t.client.search_runs([t.experiment_id], "tags.`deepmimic.role` = 'student'") == []


def test_the_experiment_opens_in_the_model_training_view_without_an_empty_default(tmp_path):
    t = tracker(tmp_path)
    assert t.client.get_experiment(t.experiment_id).tags[KIND_TAG] == KIND
    assert [e.name for e in t.client.search_experiments()] == ["tiny"]


def test_the_parent_gets_a_description_and_per_student_summaries(tmp_path):
    t = tracker(tmp_path)
    t.finish({"dataset": "digits"}, Counts(mentors=1, trials=2), [], "`deepmimic sweep x.yaml`",
             {"A": [0.9, 0.8]})
    parent = t.client.get_run(t.parent)
    assert parent.data.tags["mlflow.note.content"] == "`deepmimic sweep x.yaml`"
    assert parent.data.metrics["A.relative_accuracy.best"] == 0.9
    assert abs(parent.data.metrics["A.relative_accuracy.mean"] - 0.85) < 1e-9
    assert abs(parent.data.metrics["A.relative_accuracy.sd"] - 0.0707107) < 1e-6


def test_a_resumed_sweep_logs_each_run_once(tmp_path):
    first = tracker(tmp_path)
    first.log_mentor(label("mentor:k1", "Mentor"), mentor())
    first.log_student(label(), record("A", 0.88))
    again = tracker(tmp_path)  # a rerun of the same sweep finds its parent and runs by their keys
    again.log_mentor(label("mentor:k1", "Mentor"), mentor())
    again.log_student(label(), record("A", 0.88))
    again.finish({"dataset": "digits"}, Counts(mentors=1, trials=1), [], "", {"A": [0.88]})
    runs = again.client.search_runs([again.experiment_id])
    assert again.parent == first.parent and len(runs) == 3  # sweep, mentor, student
    parent = again.client.get_run(again.parent)
    assert parent.data.tags["deepmimic.trials"] == "1" and parent.info.status == "FINISHED"
    (student,) = [r for r in runs if r.info.run_name == "A · split 0.2"]
    assert len(again.client.get_metric_history(student.info.run_id, "test_accuracy")) == 1


def test_a_sqlite_store_on_a_shared_file_system_is_named_as_such():
    from deepmimic.tracking import shared_file_system

    mounts = ("/dev/sda1 / ext4 rw 0 0\nserver:/export /mnt/nfs nfs4 rw 0 0\n"
              "tmpfs /mnt/nfs/local tmpfs rw 0 0\n")
    assert shared_file_system("/mnt/nfs/runs/q", mounts) == "nfs4"
    assert shared_file_system("/mnt/nfs", mounts) == "nfs4"
    assert shared_file_system("/mnt/nfs/local/q", mounts) is None   # the longest mount point wins
    assert shared_file_system("/mnt/nfsother/q", mounts) is None    # a prefix of the name is not a parent
    assert shared_file_system("/home/q", mounts) is None


def test_a_run_not_carrying_a_model_keeps_its_scores_and_checkpoint_and_gets_the_rest_when_asked(tmp_path):
    """`tracking.models: best`: a trial's run gets its scores and checkpoint as it ends; its figures and MLflow
    model only once it is its student's best (logged again, with `full`)."""
    import dataclasses

    from deepmimic.core import checkpoints
    from deepmimic.core.architectures import ModelSpec
    from deepmimic.core.training import Training, sgd

    net = ModelSpec("c-fc", width=2).build((1, 8, 8), 2, [0.0], [1.0])
    folder = tmp_path / "ckpt"
    folder.mkdir()
    checkpoints.save(str(folder), net, sgd(net, Training()), 2, [], {"spec": {"architecture": "c-fc", "width": 2},
                     "shape": [1, 8, 8], "num_classes": 2, "mean": [0.0], "std": [1.0]})
    done = record("A", 0.88)
    done = dataclasses.replace(done, student=dataclasses.replace(done.student, checkpoint=str(folder)))
    t = tracker(tmp_path)
    run = t.log_student(label(), done, full=False)
    assert t.client.list_artifacts(run, "plots") == [] and "deepmimic.model_uri" not in t.client.get_run(run).data.tags
    assert {a.path for a in t.client.list_artifacts(run, "checkpoint")} >= {"checkpoint/model.pt"}
    assert t.log_student(label(), done, full=True) == run
    assert t.client.list_artifacts(run, "plots") and "deepmimic.model_uri" in t.client.get_run(run).data.tags
    assert len(t.client.get_metric_history(run, "test_accuracy")) == 1  # its scores once


def test_a_new_store_is_a_copy_of_an_empty_one_made_once(tmp_path, monkeypatch):
    """MLflow's migrations run once per MLflow version (into the cache); every new store is a copy of that, and
    a store that exists is left as it is."""
    import os

    from deepmimic.tracking import new_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tracker(tmp_path / "a")
    (template,) = (tmp_path / "cache" / "deepmimic").glob("mlflow-*.db")
    made = template.stat().st_mtime_ns
    second = tracker(tmp_path / "b")
    assert template.stat().st_mtime_ns == made and [e.name for e in second.client.search_experiments()] == ["tiny"]
    first.log_student(label(), record("A", 0.88))
    size = os.path.getsize(tmp_path / "a" / "mlflow.db")
    new_store(str(tmp_path / "a" / "mlflow.db"))
    assert os.path.getsize(tmp_path / "a" / "mlflow.db") == size  # its runs kept
    assert len(tracker(tmp_path / "a").client.search_runs([first.experiment_id])) == 2  # the sweep, the student


def test_a_store_whose_writer_was_killed_mid_transaction_is_rolled_back_and_opened(tmp_path):
    """A driver killed by SIGKILL may leave its store's hot journal, which a read-only check cannot roll back
    (SQLite answers "attempt to write a readonly database"): the sweep that resumes it opens the store."""
    import subprocess
    import sys

    from deepmimic.tracking import check_store

    t = tracker(tmp_path)
    t.log_student(label(), record("A", 0.88))
    store = tmp_path / "mlflow.db"
    subprocess.run([sys.executable, "-c", f"""
import os, sqlite3
db = sqlite3.connect({str(store)!r}, isolation_level=None)
db.execute("PRAGMA cache_size=2")
db.execute("BEGIN")
db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
               [(f"k{{i}}", "v" * 1000, "x") for i in range(2000)])
os._exit(0)  # killed mid-transaction, its pages already spilled into the store
"""], check=True)
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0
    check_store(default_uri(str(tmp_path)))
    assert not (tmp_path / "mlflow.db-journal").exists()
    assert len(tracker(tmp_path).client.search_runs([t.experiment_id])) == 2  # the sweep, the student: kept
