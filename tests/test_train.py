"""Where a run's checkpoints go when it trains in its Tune trial's own process, and which one a restart resumes from."""

from __future__ import annotations

import pytest

from deepmimic.config import ResourcesConfig
from deepmimic.core import checkpoints
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.training import CrossEntropy, Training, sgd
from deepmimic.distributed.data import TableInfo
from deepmimic.distributed.mentor_folder import MentorFolder
from deepmimic.distributed.train import DataPlan, Hooks, ModelPlan, Placement, RunSpec, _latest, _OwnProcess, fit

from .conftest import wait_for

SPEC = {"architecture": "c-fc", "width": 2}


def save_epoch(run: _OwnProcess, tmp_path, epoch: int) -> None:
    net = ModelSpec(**SPEC).build((1, 8, 8), 3, [0.0], [1.0])
    folder = tmp_path / f"local-{epoch}"
    folder.mkdir()
    checkpoints.save(str(folder), net, sgd(net, Training()), epoch, [{"epoch": epoch}], {"spec": SPEC})
    run.report({"epoch": epoch}, str(folder), epoch)


def test_a_run_of_its_own_keeps_its_newest_two_checkpoints(tmp_path):
    run = _OwnProcess(str(tmp_path / "run"))
    for epoch in (2, 4, 6):
        save_epoch(run, tmp_path, epoch)
    kept = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert kept == ["checkpoint_epoch-000004", "checkpoint_epoch-000006"]
    assert run.last.path.endswith("checkpoint_epoch-000006")


def test_a_restart_resumes_from_the_furthest_intact_checkpoint(tmp_path):
    run = _OwnProcess(str(tmp_path / "run"))
    save_epoch(run, tmp_path, 4)
    save_epoch(run, tmp_path, 6)
    (tmp_path / "run" / "checkpoint_epoch-000006" / "model.pt").write_bytes(b"cut off")
    with _latest(str(tmp_path / "run")).as_directory() as d:
        assert checkpoints.progress(d)["epoch"] == 4
    assert _latest(str(tmp_path / "nothing")) is None


def test_only_a_single_worker_trains_in_its_callers_process(tmp_path):
    with pytest.raises(ValueError, match="single-worker"):
        table = TableInfo(str(tmp_path / "t.parquet"), 8, (1, 8, 8), ("a", "b", "c"), [0.0], [1.0])
        fit(RunSpec("x", str(tmp_path), ModelPlan(ModelSpec(**SPEC), Training(), 0, CrossEntropy()),
                    DataPlan(table, "label", table, 3), Placement(ResourcesConfig(num_workers=2), in_process=True)))


def test_a_worker_group_tells_the_sweeps_tracker_each_epoch_from_rank_0(ray_local, digits, tmp_path):
    """A Ray Train worker group of two (DDP): rank 0 opens the live MLflow run and logs each epoch once,
    the run's duration spanning the training."""
    from mlflow.tracking import MlflowClient

    from deepmimic.core.results import MentorResult
    from deepmimic.core.splits import stratified_split
    from deepmimic.distributed.data import write_split
    from deepmimic.distributed.progress import Progress
    from deepmimic.distributed.sweep import start_tracker
    from deepmimic.run_names import RunLabel
    from deepmimic.tracking import default_uri

    data = write_split(digits, stratified_split(digits.train.labels, 0.2, 0), MentorFolder(str(tmp_path)), pool=False)
    tracked = start_tracker(default_uri(str(tmp_path)), "group", str(tmp_path), str(tmp_path / "art"))
    label = RunLabel("mentor:group", "mentor", "Mentor · two workers", {"resources.num_workers": 2})
    resources = ResourcesConfig(num_workers=2, cpus_per_worker=0.5, threads_per_worker=1)
    model = ModelPlan(ModelSpec(**SPEC), Training(epochs=3, batch_size=32), 0, CrossEntropy())
    trained = fit(RunSpec("group", str(tmp_path / "ray"), model, DataPlan(data.mentor, "label", data.test, 10),
                          Placement(resources), Hooks(Progress(tracked.tracker, label, tracked.ready))))
    # as the sweep's trial does next: the run's result, which ends it at its training's end
    result = MentorResult.of(trained.summary, name="Mentor", architecture=SPEC["architecture"])
    tracked.tracker.log_mentor.remote(label, result, False)
    client = MlflowClient(tracking_uri=default_uri(str(tmp_path)))

    def finished():  # rank 0's calls, sent before the group ended, may still be on their way
        runs = client.search_runs([client.get_experiment_by_name("group").experiment_id],
                                  "tags.`deepmimic.role` = 'mentor'")
        return runs if runs and runs[0].info.status == "FINISHED" else None

    (run,) = wait_for(finished, "the run's end", 30)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_loss")]
    assert run.info.run_name == "Mentor · two workers" and steps == [1, 2, 3]
    assert run.info.end_time - run.info.start_time >= 1000 * trained.summary.train_time_s
