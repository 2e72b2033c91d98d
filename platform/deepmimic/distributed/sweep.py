"""A sweep on Ray Tune, in two stages: every distinct mentor once, then every student trial.

Mentors and their soft labels live in a cache addressed by the hash of what
determines them, so students of this sweep and of later sweeps reuse them.
A finished trial leaves `trials/KEY/trial.json` and its manifest; a rerun skips it
(and redoes one whose file does not match its manifest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import ray
from ray import tune

from ..config import EnsembleConfig, ModelConfig, SweepConfig
from ..core import tables
from ..errors import UserError
from .stages import (MentorOutcome, member_config, mentor_key, student_key, student_set, train_mentor,
                     train_student)
from .student_sets import StudentSet
from .train import Resources


@dataclass(frozen=True)
class Trial:
    key: str
    cfg: SweepConfig
    student: ModelConfig
    grid: dict[str, Any]      # this trial's axis values


def plan(points: list[tuple[dict[str, Any], SweepConfig]]) -> tuple[dict[str, SweepConfig], dict[str, Trial]]:
    """Distinct mentors by key (an ensemble's members first), and student trials by key, in grid order."""
    mentors: dict[str, SweepConfig] = {}
    trials: dict[str, Trial] = {}
    for values, cfg in points:
        if isinstance(cfg.mentor, EnsembleConfig):
            for member in cfg.mentor.members:
                mentors.setdefault(mentor_key(member_config(cfg, member)), member_config(cfg, member))
        mentors.setdefault(mentor_key(cfg), cfg)
        for student in cfg.students:
            key = student_key(cfg, student)
            trials[key] = Trial(key, cfg, student, {**values, "student": student.name})
    return mentors, trials


def mentor_folder(cache: str, key: str) -> str:
    return f"{cache}/mentors/{key}"


def trial_file(out: str, key: str) -> str:
    return f"{out}/trials/{key}/trial.json"


def _mentor_trial(config: dict[str, Any], mentors: dict[str, SweepConfig], cache: str) -> None:
    key = config["mentor"]
    outcome = train_mentor(mentors[key], mentor_folder(cache, key), in_trial=True)
    tune.report({"mentor": key, "trained": outcome.trained, "test_accuracy": outcome.result["test_accuracy"]})


def _student_inputs(trials: list[Trial], cache: str) -> dict[str, tuple[MentorOutcome, StudentSet]]:
    """Every pending trial's mentor (loaded and checked once per mentor) and student
    set (built once per mentor and variant by Ray Data), in the driver.

    Built here, between the Tune stages, Ray Data has the cluster to itself
    instead of competing with trials that hold its CPUs.
    """
    mentors: dict[str, MentorOutcome] = {}
    inputs = {}
    for t in trials:
        key = mentor_key(t.cfg)
        if key not in mentors:
            mentors[key] = train_mentor(t.cfg, mentor_folder(cache, key))  # cached; an ensemble is combined here
        inputs[t.key] = (mentors[key], student_set(t.cfg, mentors[key]))
    return inputs


def _student_trial(config: dict[str, Any], trials: dict[str, Trial],
                   inputs: dict[str, tuple[MentorOutcome, StudentSet]], out: str) -> None:
    trial = trials[config["trial"]]
    mentor, data = inputs[trial.key]
    row = train_student(trial.cfg, trial.student, mentor, data, os.path.dirname(trial_file(out, trial.key)), in_trial=True)
    record = {"key": trial.key, "mentor_key": mentor_key(trial.cfg), "grid": trial.grid, "seed": trial.cfg.seed,
              "split_ratio": trial.cfg.split.mentor_ratio, "variant": trial.cfg.variant.model_dump(),
              "mentor": mentor.result, "student": row}
    tables.write_json(record, trial_file(out, trial.key))
    tune.report({"trial": trial.key, "student": trial.student.name, "test_accuracy": row["test_accuracy"],
                 "relative_accuracy": row["relative_accuracy"]})


class _OnComplete(tune.Callback):
    """Calls `fn(result)` in the driver as each trial finishes (MLflow logging hangs here)."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.last_result:
            self.fn(trial.last_result)


def _per_worker(base: SweepConfig) -> dict[str, float]:
    return Resources(**base.resources.model_dump()).per_worker()


def trial_resources(base: SweepConfig) -> dict[str, float]:
    """What a trial's own process holds: a single worker's resources, since such a run trains
    in that process; else `trial_cpus`, beside the worker group the trial starts."""
    if base.resources.num_workers > 1:
        return {"CPU": base.trial_cpus}
    return {k: v for k, v in _per_worker(base).items() if v}


def concurrency(base: SweepConfig, cluster: dict[str, float]) -> int:
    """How many trials fit the cluster at once, each with its own process and its training workers.

    A trial with a worker group reserves only `trial_cpus`; its Ray Train workers
    ask for theirs later, so without this bound trials could hold every CPU while
    their workers wait forever. A resource the cluster lacks today (GPUs on an
    autoscaling cluster at zero workers) sets no bound: the autoscaler adds it.
    """
    workers = base.resources.num_workers
    need = {k: workers * v for k, v in _per_worker(base).items()}
    if workers > 1:
        need["CPU"] += base.trial_cpus
    fits = [int(cluster[k] // v) for k, v in need.items() if v > 0 and cluster.get(k, 0) > 0]
    return max(1, min(fits)) if fits else 1


def _tune(name: str, fn: Callable, axis: str, keys: list[str], base: SweepConfig, storage: str,
          on_complete: Callable[[dict[str, Any]], None]) -> None:
    # Reused trial processes have PyTorch imported already: a new one costs 3-4 s on 2 cores.
    tuner = tune.Tuner(
        tune.with_resources(fn, tune.PlacementGroupFactory([trial_resources(base)])),
        param_space={axis: tune.grid_search(keys)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=concurrency(base, ray.cluster_resources())),
        run_config=tune.RunConfig(name=name, storage_path=storage, callbacks=[_OnComplete(on_complete)],
                                  failure_config=tune.FailureConfig(max_failures=base.fault_tolerance.trial_retries),
                                  verbose=1),
    )
    grid = tuner.fit()
    failed = [r for r in grid if r.error]
    if failed:
        err = failed[0].error
        cause = getattr(err, "cause", None) or err
        if isinstance(cause, UserError):
            raise cause
        raise RuntimeError(f"{len(failed)} {name} trial(s) failed; first: {err}")


def run_sweep(base: SweepConfig, points: list[tuple[dict[str, Any], SweepConfig]], out: str, cache: str,
              on_mentor: Callable[[str, SweepConfig, dict[str, Any]], None] = lambda *a: None,
              on_trial: Callable[[dict[str, Any]], None] = lambda r: None) -> dict[str, Any]:
    """Run every mentor and student trial not yet finished; return counts of what ran."""
    mentors, trials = plan(points)
    pending = [k for k in trials if not tables.intact(trial_file(out, k))]
    needed = {mentor_key(trials[k].cfg) for k in pending}
    needed |= {mentor_key(member_config(mentors[k], m)) for k in needed if isinstance(mentors[k].mentor, EnsembleConfig)
               for m in mentors[k].mentor.members}
    to_train = [k for k in mentors if k in needed and not tables.intact(f"{mentor_folder(cache, k)}/mentor.json")]
    # Ensembles are combined from their members in the driver, after the members' stage.
    on_tune = [k for k in to_train if not isinstance(mentors[k].mentor, EnsembleConfig)]
    storage = f"{out}/tune"

    def mentor_done(result: dict[str, Any]) -> None:
        key = result["mentor"]
        on_mentor(key, mentors[key], tables.read_json(f"{mentor_folder(cache, key)}/mentor.json")["result"])

    def trial_done(result: dict[str, Any]) -> None:
        on_trial(tables.read_json(trial_file(out, result["trial"])))

    if on_tune:
        _tune("mentors", tune.with_parameters(_mentor_trial, mentors=mentors, cache=cache), "mentor", on_tune,
              base, storage, mentor_done)
    if pending:
        inputs = _student_inputs([trials[k] for k in pending], cache)
        _tune("students", tune.with_parameters(_student_trial, trials=trials, inputs=inputs, out=out), "trial",
              pending, base, storage, trial_done)
    return {"mentors": len(mentors), "mentors_trained": len(to_train), "mentors_reused": len(mentors) - len(to_train),
            "trials": len(trials), "trials_run": len(pending), "trials_reused": len(trials) - len(pending),
            "trial_keys": list(trials)}
