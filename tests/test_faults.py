"""Faults met for real: a sweep driver killed with SIGKILL and run again, a cached
soft-label file truncated, a training process (a single-worker run trains in its
Tune trial's process) killed mid-training, a black-box mentor that stops answering.

The tests share one cache: the first sweep trains the mentor (the killed
driver's, or a primer when a later test runs alone), the next sweep meets
both the truncated file and the killed worker.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from deepmimic.core import artifacts

from .conftest import DEEPMIMIC, session_ray, trial_pids, wait_for


def space(name: str, students: list[str], epochs: int = 4, checkpoint_every: int = 0) -> dict:
    return {
        "name": name, "dataset": {"name": "digits"}, "training": {"epochs": epochs, "batch_size": 32},
        "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8, "training": {"epochs": 4}},
        "students": [{"name": s, "architecture": "c-fc", "width": 4 + i} for i, s in enumerate(students)],
        # One run at a time (1 + 0.25 CPUs of 2), so the driver dies between trials.
        "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
        "fault_tolerance": {"checkpoint_every": checkpoint_every, "worker_restarts": 2, "trial_retries": 1},
        "tracking": {"models": "none"},  # no claim here reads figures or models
        "grid": {"student": students},
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    ray = session_ray()
    tmp = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return tmp, env


def start(shared, spec: dict) -> subprocess.Popen:
    tmp, env = shared
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = [*DEEPMIMIC, "sweep", str(path), "--out", str(tmp / spec["name"]), "--cache", str(tmp / "cache")]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    return out


def results(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_a_killed_driver_resumes_without_rerunning_or_duplicating(shared):
    tmp, _ = shared
    spec = space("killed", ["A", "B"])
    out = tmp / "killed"
    proc = start(shared, spec)
    first = wait_for(lambda: list(out.glob("trials/*/trial.json")))
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    live = wait_for(lambda: [r for r in client.search_runs(  # logged as it trained, before the driver's end
        [client.get_experiment_by_name("killed").experiment_id], "tags.`deepmimic.role` = 'student'")
        if len(client.get_metric_history(r.info.run_id, "epoch_train_loss")) == 4], "a live run", 30)
    assert proc.poll() is None and live
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: Ray ends the trials it owned
    proc.wait()
    # A trial may still finish (and keep its result) in the moment before Ray ends it.
    wait_for(lambda: not trial_pids(), "the killed driver's trials to end", 60)
    done_before = {p.parent.name for p in out.glob("trials/*/trial.json")}
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")}

    log = finish(start(shared, spec))

    counts = json.loads((out / "sweep.json").read_text())["counts"]
    assert counts["mentors_trained"] == 0 and counts["trials_reused"] == len(done_before) >= len(first)
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")}
    assert {k: v for k, v in after.items() if k in done_before} == stamps
    assert sorted(r["student"] for r in results(out)) == ["A", "B"]  # every trial exactly once
    assert len(list((tmp / "cache").glob("mentors/*/ray/mentor-*"))) == 1
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    keys = [r.data.tags["deepmimic.key"] for r in runs]
    assert len(keys) == len(set(keys)) == 1 + 1 + 2, log[-2000:]  # sweep, mentor, two students
    for run in runs:  # each epoch once, whether it was logged live, before the kill, or after the resume
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch_train_loss")]
        assert steps == ([] if run.data.tags["deepmimic.key"].startswith("sweep:") else [1, 2, 3, 4])
        assert run.info.status == "FINISHED"


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged(shared):
    """A next sweep (new student, same mentor) after the cached soft labels were
    truncated, whose training worker is killed with SIGKILL half-way."""
    tmp, _ = shared
    if not list((tmp / "cache").glob("mentors/*/soft_labels.parquet")):  # run alone: no earlier sweep cached it
        finish(start(shared, space("primer", ["A"])))
    (soft,) = (tmp / "cache").glob("mentors/*/soft_labels.parquet")
    with open(soft, "r+b") as f:
        f.truncate(soft.stat().st_size // 2)
    with pytest.raises(artifacts.TornArtifact):
        artifacts.verify(str(soft))
    (part,) = (tmp / "cache").glob("mentors/*/student_sets/*/*/part-*.parquet")  # the next sweep's set too
    flip_a_byte(part)
    proc = start(shared, space("damaged", ["E"], epochs=20, checkpoint_every=2))
    # Killed once the run has stored a whole checkpoint (its manifest comes last).
    wait_for(lambda: list((tmp / "damaged").glob("trials/*/ray/student-*/checkpoint_epoch-*/_manifest.json")))
    pids = trial_pids()
    assert len(pids) == 1  # one student trial, training in its own process
    os.kill(pids[0], signal.SIGKILL)
    finish(proc)
    return tmp, soft


def test_a_truncated_soft_label_file_is_rebuilt_not_trained_on(damaged):
    tmp, soft = damaged
    artifacts.verify(str(soft))  # whole again
    mentor = json.loads((soft.parent / "mentor.json").read_text())["result"]
    assert mentor["resumed_from_epoch"] == 4  # labelled again from its final checkpoint, not trained again
    assert len(list((tmp / "cache").glob("mentors/*/ray/mentor-*"))) == 1


def test_a_student_set_with_a_flipped_byte_is_built_again_and_both_rebuilds_are_counted(damaged):
    tmp, _ = damaged
    (built,) = (tmp / "cache").glob("mentors/*/student_sets/*/set.json")
    artifacts.verify(json.loads(built.read_text())["table"]["uri"])  # the set a student learnt from: whole
    assert json.loads((tmp / "damaged" / "sweep.json").read_text())["counts"]["rebuilt"] == 2  # soft labels, set
    records = sorted(json.loads(p.read_text())["rebuilt"] for p in (tmp / "cache").glob("mentors/*/rebuilt/*.json")
                     if not p.name.endswith(".manifest.json"))
    assert len(records) == 2 and records[0].endswith("/soft_labels.parquet"), records
    assert records[1].startswith(str(built.parent) + "/"), records  # the damaged set's folder, named


def test_a_killed_training_process_restarts_from_its_checkpoint(damaged):
    tmp, _ = damaged
    (trial,) = (tmp / "damaged").glob("trials/*/trial.json")
    student = json.loads(trial.read_text())["student"]
    assert student["resumed_from_epoch"] >= 2  # not from scratch
    assert [h["epoch"] for h in student["history"]] == list(range(1, 21))
    assert [r["student"] for r in results(tmp / "damaged")] == ["E"]


def test_a_black_box_that_stops_answering_keeps_every_answer_and_is_asked_only_the_rest(shared, tmp_path):
    """A paid endpoint whose credit runs out after 700 images (503 from then on): the run stops with one line
    naming it, the 640 images answered (five requests of 128) are kept; with credit again, the same command asks
    for the other 888 of the pool's 1078 and the test set's 450, and no image twice."""
    from deepmimic.core.architectures import ModelSpec

    from .conftest import scoring_endpoint

    _, env = shared
    model = ModelSpec("c-mp-fc", width=4).build((1, 8, 8), 10, [80.0], [60.0]).eval()
    paid = {"limit": 700}
    with scoring_endpoint(model, paid) as url:
        box = {"kind": "http", "location": url, "batch_size": 128, "retries": 1, "timeout_s": 5}
        path = tmp_path / "paid.yaml"
        path.write_text(yaml.safe_dump({"name": "paid", "dataset": {"name": "digits"}, "training": {"epochs": 1},
                                        "mentor": {"name": "Paid", "black_box": box},
                                        "students": [{"name": "S", "architecture": "c-fc", "width": 4}]}))
        args = [*DEEPMIMIC, "run", str(path), "--out", str(tmp_path / "out")]
        stopped = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert stopped.returncode == 2 and stopped.stderr.strip().splitlines()[-1] == (
            f"deepmimic: error: black box {url}: no answer after 2 tries (last: HTTP 503)"), stderr_tail(stopped)
        assert paid["images"] == 640 and not (tmp_path / "out" / "result.json").exists()
        paid["limit"] = None
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, stderr_tail(again)
    assert paid["images"] == 1078 + 450
    queries = json.loads((tmp_path / "out" / "result.json").read_text())["mentor"]["queries"]
    assert (queries["images"], queries["cached"]) == (1078 + 450 - 640, 640)


def stderr_tail(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-1500:] + proc.stderr[-2500:]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only: where it cannot be mounted the test is skipped, saying why); unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"a small file system needs mount (root): {made.stderr.strip()[:200]}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_under_the_cache_ends_in_one_line_and_the_same_command_resumes(shared, small_disk):
    """Two seeds' mentors and students with the cache on 1 MiB: the sweep stops at the first write that does not
    fit with one line naming it, no traceback from any process; with space again (the same file system grown,
    its files kept), the same command finishes what was left, making nothing twice."""
    tmp, env = shared
    spec = {**space("full", ["S"], epochs=2), "grid": {"seed": [0, 1]}}
    path = tmp / "full.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = [*DEEPMIMIC, "sweep", str(path), "--out", str(tmp / "full"), "--cache", str(small_disk / "cache")]
    full = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in full.stderr.splitlines() if line.startswith("deepmimic: error: ")]
    assert full.returncode == 2 and len(errors) == 1, stderr_tail(full)
    last = errors[0]
    assert last.startswith(f"deepmimic: error: {small_disk}/cache/"), last
    assert last.endswith("no space left on its device while writing it; free some and run the same command again "
                         "(what was finished is kept)")
    assert "Traceback" not in full.stdout + full.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, stderr_tail(again)
    assert len(results(tmp / "full")) == 2
    counts = json.loads((tmp / "full" / "sweep.json").read_text())["counts"]
    assert counts["mentors_reused"] + counts["trials_reused"] >= 1, counts  # what finished before, not made again

