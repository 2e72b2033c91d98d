"""A sweep's trials on Ray Tune (`distributed/trials.py`), run in this process on the session's Ray."""

from __future__ import annotations

import threading

from deepmimic.config import SweepConfig, parse_experiment
from deepmimic.distributed.planning import plan
from deepmimic.distributed.trials import run_stages

from .conftest import trial_pids

PAIR = {"name": "pair", "dataset": {"name": "digits"}, "training": {"epochs": 1},
        "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
        "students": [{"name": "S", "architecture": "c-fc", "width": 2}],
        "resources": {"cpus_per_worker": 1, "threads_per_worker": 1}, "fault_tolerance": {"checkpoint_every": 0}}


def test_a_mentor_and_its_one_student_start_one_trial_process(ray_local, tmp_path):
    """The student waits on its mentor, so a second trial process (two fit the session's two CPUs) would only
    start, wait and go unused, Tune giving the student the first one once the mentor is done: one is started."""
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # a trial process lives seconds (its imports alone): every 20 ms sees each
        while not done.wait(0.02):
            seen.update(trial_pids())

    base = parse_experiment(PAIR, "pair", SweepConfig)
    before = set(trial_pids())  # an earlier test's, while Ray ends them
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        counts = run_stages(base, plan([({}, base)]), str(tmp_path / "out"), str(tmp_path / "cache"))
    finally:
        done.set()
        watcher.join()
    assert (counts.mentors_trained, counts.trials_run) == (1, 1)
    assert len(seen - before) == 1, (seen, before)
