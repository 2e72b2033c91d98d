"""Sweeps through the real CLI on the session's Ray: mentor reuse and MLflow tracking."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from .conftest import DEEPMIMIC, mlflow_process, session_ray, sweep

EPOCHS = 3
SIX_STUDENTS = {
    "name": "six",
    "dataset": {"name": "digits"},
    "training": {"epochs": EPOCHS, "batch_size": 64},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": f"S{w}", "architecture": "c-fc", "width": w} for w in (2, 3, 4, 5, 6, 7)],
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
    "grid": {"student": [f"S{w}" for w in (2, 3, 4, 5, 6, 7)]},
}


def mentor_trainings(cache: Path) -> int:
    """Ray Train runs of mentors ever started under the cache."""
    return len(list(cache.glob("mentors/*/ray/mentor-*")))


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    ray = session_ray()
    tmp = tmp_path_factory.mktemp("six")
    proc = sweep(ray, tmp, SIX_STUDENTS, str(tmp / "a"), str(tmp / "cache"))
    return tmp, proc


def test_one_mentor_is_trained_once_for_six_students(six):
    tmp, proc = six
    counts = json.loads((tmp / "a" / "sweep.json").read_text())["counts"]
    assert counts["mentors"] == 1 and counts["mentors_trained"] == 1 and counts["trials_run"] == 6
    assert mentor_trainings(tmp / "cache") == 1
    rows = (tmp / "a" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 7 and "student_accuracy" in rows[0]
    assert (tmp / "a" / "report.md").read_text().count("| S") >= 6


def test_a_sweep_warns_of_no_file_tune_no_longer_writes(six):
    """Tune's loggers are off, so no trial has the progress file its result grid reads: a warning a trial."""
    assert "Failed to fetch metrics" not in six[1].stderr, six[1].stderr[-2000:]


def test_each_trial_has_its_galleries_and_a_bootstrap_interval_around_its_accuracy_gap(six):
    tmp, _ = six
    rows = list(csv.DictReader((tmp / "a" / "results.csv").open()))
    for row in rows:
        gap = float(row["student_accuracy"]) - float(row["mentor_accuracy"])
        assert float(row["accuracy_gap_low"]) <= gap <= float(row["accuracy_gap_high"])
    assert len(list((tmp / "a").glob("trials/*/galleries.png"))) == 6
    report = (tmp / "a" / "report.md").read_text()
    assert "(Figs. 6-7)" in report and report.count("/galleries.png)") == 6 and "95% interval" in report


def test_a_second_sweep_trains_no_mentor(ray_local, six):
    """Another sweep (another folder, another grid) that needs the same mentor takes it from the cache."""
    tmp, _ = six
    space = {**SIX_STUDENTS, "name": "other", "grid": {"student": ["S7"]}}
    proc = sweep(ray_local, tmp, space, str(tmp / "b"), str(tmp / "cache"))
    counts = json.loads((tmp / "b" / "sweep.json").read_text())["counts"]
    assert counts["mentors_trained"] == 0 and counts["trials_run"] == 1
    assert mentor_trainings(tmp / "cache") == 1
    assert "0 trained, 1 reused" in proc.stdout


def test_rerun_on_the_same_folder_runs_nothing(ray_local, six):
    tmp, _ = six
    proc = sweep(ray_local, tmp, SIX_STUDENTS, str(tmp / "a"), str(tmp / "cache"))
    assert "student trials: 6 (0 run, 6 already done)" in proc.stdout
    assert mentor_trainings(tmp / "cache") == 1


def test_mlflow_store_holds_parent_nested_runs_metrics_and_plots(six):
    tmp, proc = six
    uri = f"sqlite:///{tmp / 'a' / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {uri}" in proc.stdout
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("six")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # the rerun above continued it, no duplicate
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    roles = sorted(r.data.tags["deepmimic.role"] for r in children)
    assert roles == ["mentor"] + ["student"] * 6
    assert sorted(r.info.run_name for r in children) == ["Mentor", "S2", "S3", "S4", "S5", "S6", "S7"]
    student = next(r for r in children if r.info.run_name == "S4")
    history = client.get_metric_history(student.info.run_id, "epoch_test_accuracy")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    assert {"relative_accuracy", "agreement"} <= student.data.metrics.keys()
    assert student.data.params["width"] == "4" and student.data.params["training.epochs"] == str(EPOCHS)
    assert student.data.tags["student"] == "S4" and student.info.status == "FINISHED"
    # S4's one trial is its best: it carries figures and a model (`tracking.models: best`), and every run its
    # checkpoint
    plots = {a.path for a in client.list_artifacts(student.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrices.png", "plots/galleries.png"}
    drawn = client.download_artifacts(student.info.run_id, "plots/galleries.png", str(tmp / "dl"))
    trial = next(p.parent for p in (tmp / "a").glob("trials/*/trial.json")
                 if json.loads(p.read_text())["student"]["name"] == "S4")
    assert Path(drawn).read_bytes() == (trial / "galleries.png").read_bytes()  # drawn once, from what it kept
    kept = {a.path for a in client.list_artifacts(student.info.run_id, "checkpoint")}
    assert {"checkpoint/model.pt", "checkpoint/model.json"} <= kept
    assert {"accuracy_gap", "accuracy_gap_low", "accuracy_gap_high"} <= student.data.metrics.keys()
    assert "results.csv" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert parents[0].data.metrics["S4.relative_accuracy.best"] == student.data.metrics["relative_accuracy"]


def test_each_students_best_trial_is_a_registered_mlflow_model_answering_probabilities(six, monkeypatch):
    import mlflow.pyfunc
    import numpy as np

    tmp, _ = six
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'a' / 'mlflow.db'}")
    names = sorted(m.name for m in client.search_registered_models())
    assert names == [f"six-S{w}" for w in (2, 3, 4, 5, 6, 7)]
    (version,) = client.search_model_versions("name = 'six-S5'")  # the rerun registered nothing twice
    run = client.get_run(version.run_id)
    relative = f"{run.data.metrics['relative_accuracy']:.4f}"
    assert run.info.run_name == "S5" and version.tags["relative_accuracy"] == relative
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'a' / 'mlflow.db'}")
    probabilities = mlflow.pyfunc.load_model("models:/six-S5/1").predict(np.zeros((3, 1, 8, 8), np.float32))
    assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(1), 1.0, atol=1e-5)


def test_a_sweep_on_a_storage_uri_needs_a_tracking_server(ray_local, tmp_path):
    path = tmp_path / "uri.yaml"
    path.write_text(yaml.safe_dump({**SIX_STUDENTS, "name": "uri", "grid": {"student": ["S2"]}}))
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    env.pop("MLFLOW_TRACKING_URI", None)
    refused = subprocess.run([*DEEPMIMIC, "sweep", str(path), "--storage", f"file://{tmp_path / 'bucket'}"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "needs MLFLOW_TRACKING_URI" in refused.stderr


def test_a_sweep_on_a_storage_uri_tracks_to_a_real_mlflow_server_over_http(served_sweep):
    """`--storage` as a URI goes through pyarrow's file systems end to end, and its runs to the server."""
    uri, root, proc = served_sweep
    assert f"tracked at {uri}" in proc.stdout
    written = {p.name for p in (root / "served").iterdir()}
    assert {"results.csv", "report.md", "sweep.json", "learning_curves.png"} <= written
    assert len(list(root.glob("cache/mentors/*/mentor.json"))) == 2
    assert len(list(root.glob("served/trials/*/trial.json"))) == 4
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    roles = sorted(r.data.tags.get("deepmimic.role", "sweep") for r in runs)
    assert roles == ["mentor"] * 2 + ["student"] * 4 + ["sweep"]
    assert not list(root.glob("**/mlflow.db"))  # nothing tracked beside the outputs


def test_by_default_the_mentors_and_each_students_best_carry_figures_and_a_model(served_sweep):
    """`tracking.models: best`: 2 mentors and the best of each student's 2 trials get an MLflow model and their
    figures; the other students' runs their scores and checkpoint only."""
    uri, root, _ = served_sweep
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id], "tags.`deepmimic.role` != ''")
    modelled = sorted(r.info.run_name for r in runs if "deepmimic.model_uri" in r.data.tags)
    assert len(modelled) == 4 and sum(name.startswith("Mentor") for name in modelled) == 2
    for run in runs:
        has_plots = bool(client.list_artifacts(run.info.run_id, "plots"))
        assert has_plots == ("deepmimic.model_uri" in run.data.tags), run.info.run_name
        assert client.list_artifacts(run.info.run_id, "checkpoint"), run.info.run_name
        assert "test_accuracy" in run.data.metrics
    registered = {v.run_id for m in ("served-Student-A", "served-Student-B")
                  for v in client.search_model_versions(f"name = '{m}'")}
    assert registered == {r.info.run_id for r in runs if r.data.tags["deepmimic.role"] == "student"
                          and "deepmimic.model_uri" in r.data.tags}


def test_a_tracking_failure_loses_neither_results_nor_report(ray_local, six, tmp_path):
    """MLflow failing at the end (a store gone, a server down) is one line; the results are already written.
    (Its trial is one `six` finished: nothing trains, the sweep goes straight to its end.)"""
    import shutil

    from deepmimic.config import SweepConfig, parse_experiment
    from deepmimic.distributed.sweep import run_sweep
    from deepmimic.distributed.trials import Tracked
    from deepmimic.errors import UserError
    from deepmimic.tracking import Tracker, default_uri

    base = parse_experiment({**SIX_STUDENTS, "name": "untracked", "grid": {"student": ["S2"]}}, "x", SweepConfig)
    gone = ray_local.remote(Tracker).remote(default_uri(str(tmp_path)), "untracked", str(tmp_path / "out"))
    ready = (gone.where.remote(),)
    ray_local.kill(gone)  # the tracker's process dies with the sweep's runs untracked
    shutil.copytree(six[0] / "a" / "trials", tmp_path / "out" / "trials")
    with pytest.raises(UserError, match="MLflow logging failed .*Actor.*results.csv"):
        run_sweep(base, [({"student": "S2"}, base)], str(tmp_path / "out"), str(six[0] / "cache"),
                  Tracked(gone, ready))
    assert (tmp_path / "out" / "results.csv").exists() and (tmp_path / "out" / "report.md").exists()


def test_a_mentor_gone_from_the_cache_is_logged_from_its_students_records(ray_local, six, tmp_path, capsys):
    """A finished sweep whose runs never reached MLflow, its mentor's cache folder since removed (space freed):
    the same command logs the mentor's run from its students' records, where it failed every time it was run."""
    import shutil

    from deepmimic.config import load_sweep
    from deepmimic.distributed.sweep import run_sweep, start_tracker
    from deepmimic.tracking import default_uri

    tmp, _ = six
    out = tmp_path / "a"
    shutil.copytree(tmp / "a" / "trials", out / "trials")  # every trial finished, nothing tracked, no cache
    # no figures or models: the runs' scores are the claim (the tracking key is not one of a trial's)
    (tmp_path / "six.yaml").write_text(yaml.safe_dump({**SIX_STUDENTS, "tracking": {"models": "none"}}))
    base, points = load_sweep(tmp_path / "six.yaml")
    tracked = start_tracker(default_uri(str(out)), base.name, str(out), None)
    outcome = run_sweep(base, points, str(out), str(tmp_path / "cache"), tracked)
    assert outcome.counts.trials_run == 0 and "its MLflow run is logged from its students' records" in \
        capsys.readouterr().err
    client = MlflowClient(tracking_uri=default_uri(str(out)))
    (mentor,) = client.search_runs([client.get_experiment_by_name("six").experiment_id],
                                   "tags.`deepmimic.role` = 'mentor'")
    (trial, *_) = out.glob("trials/*/trial.json")
    assert mentor.data.metrics["test_accuracy"] == json.loads(trial.read_text())["mentor"]["test_accuracy"]


def test_the_tracker_actor_has_the_drivers_mlflow_variables(ray_local, tmp_path, monkeypatch):
    """Credentials and retries set in the shell that runs `deepmimic sweep` reach the tracker on a running
    cluster, whose actors otherwise start with the cluster's environment."""
    from deepmimic.distributed.sweep import start_tracker
    from deepmimic.tracking import default_uri

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "from-the-shell")
    tracked = start_tracker(default_uri(str(tmp_path)), "env", str(tmp_path), None)
    seen = ray_local.get(tracked.tracker.__ray_call__.remote(lambda _: os.environ.get("MLFLOW_TRACKING_TOKEN")))
    ray_local.kill(tracked.tracker)
    assert seen == "from-the-shell"


def test_a_registered_student_served_by_mlflow_is_a_black_box_mentor(six, digits):
    """`mlflow models serve` (a real process) answers the black-box protocol: asked as a mentor is (the same
    client, batches and checks), the served student scores on the test set what the registry recorded.
    A sweep with an HTTP black-box mentor is tested in test_mentors.py."""
    from deepmimic.core.black_box import open_black_box

    tmp, _ = six
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'a' / 'mlflow.db'}",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}  # it execs the venv's uvicorn
    with mlflow_process(["models", "serve", "-m", "models:/six-S7/1", "--env-manager", "local"], "/ping",
                        env) as url:
        mentor = open_black_box("http", f"{url}/invocations", batch_size=128)
        probabilities = mentor.probabilities(digits.test.images)
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions("name = 'six-S7'")
    accuracy = float((probabilities.argmax(1) == digits.test.labels).mean())
    assert mentor.queries.images == len(digits.test.labels) and mentor.queries.requests == 4  # 450 in 128s
    assert accuracy == pytest.approx(float(version.tags["test_accuracy"]), abs=1e-4)
