"""A sweep's trials on Ray Tune (`distributed/trials.py`), run in this process on the session's Ray."""

from __future__ import annotations

from deepmimic.config import SweepConfig, parse_experiment
from deepmimic.distributed.planning import plan
from deepmimic.distributed.trials import run_stages

PAIR = {"name": "pair", "dataset": {"name": "digits"}, "training": {"epochs": 1},
        "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
        "students": [{"name": "S", "architecture": "c-fc", "width": 2}],
        "resources": {"cpus_per_worker": 1, "threads_per_worker": 1}, "fault_tolerance": {"checkpoint_every": 0}}


def test_a_mentor_and_its_one_student_start_one_trial_process(ray_local, tmp_path):
    """The student waits on its mentor, so a second trial process (two fit the session's two CPUs) would only
    start, wait and go unused, Tune giving the student the first one once the mentor is done: one is started."""
    from ray.util.state import list_actors

    def trial_processes() -> set[str]:  # every Tune function trial's actor the cluster has seen, ended ones too
        return {a.actor_id for a in list_actors(address=ray_local.get_runtime_context().gcs_address,
                                                filters=[("class_name", "=", "ImplicitFunc")], limit=10_000)}

    base = parse_experiment(PAIR, "pair", SweepConfig)
    before = trial_processes()
    counts = run_stages(base, plan([({}, base)]), str(tmp_path / "out"), str(tmp_path / "cache"))
    assert (counts.mentors_trained, counts.trials_run) == (1, 1)
    assert len(trial_processes() - before) == 1
