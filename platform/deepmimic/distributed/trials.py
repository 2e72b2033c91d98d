"""A sweep's trials on Ray Tune: every mentor to make and every student trial to run.

Where it can, one Tune experiment (`trials`) runs them all, mentors first in the order their needs
allow, so a sweep starts one round of trial processes, which Tune reuses from trial to trial. A trial
that needs another's output (a student its mentor, an ensemble its members, later a mentor an earlier
mentor) takes it from the cache, waits on its lock where another trial is making it, and makes it itself
where none has begun: no order Tune starts them in can deadlock. A student's set (its variant of the pool
beside its mentor's answers) is then built by the first trial that needs it, in its own process, under its
lock.

With a separate unlabelled pool, its soft labels are Ray Data batch inference, whose actors need the
CPUs that trials hold, and with `data.stream: always` its students' reads need CPUs reserved beside them:
then mentors train in a first experiment (`mentors`, a wave per depth of needs), the driver labels the
pools and builds the sets (by Ray Data where they are large) while no trial runs, and the students train
in a second (`students`), each with its reads' bundle. In one round, a set is built in its trial's process
and held on its device; one larger than `data.in_memory_limit` streams with unreserved reads, as a worker
group's do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune

from ..config import SweepConfig
from ..core import artifacts
from ..core.results import Counts, TrialRecord
from ..errors import UserError
from .cluster import concurrency, raise_failures, run_config, trial_resources
from .keys import mentor_key, pool_key, with_mentor
from .mentor_folder import MentorFolder
from .mentor_stage import MentorOutcome, train_mentor
from .planning import Plan, Trial, trial_file
from .progress import Progress
from .runs import streams
from .student_sets import StudentSet
from .student_stage import prepare_pool, student_set, train_student
from .timing import Stopwatch

Inputs = tuple[MentorOutcome, StudentSet]


@dataclass(frozen=True)
class Tracked:
    """The sweep's tracker actor and the reference of its first call (`progress.Progress.ready`)."""

    tracker: Any
    ready: tuple[Any, ...]


@dataclass(frozen=True)
class Experiment:
    """What every trial of one Tune experiment shares (given to the trainable once, by Tune's object store)."""

    planned: Plan
    out: str
    cache: str
    tracked: Tracked | None
    inputs: dict[str, Inputs] | None  # each student trial's mentor and set, made in the driver; None: in trials

    def progress(self, key: str) -> Progress | None:
        """Where the run of `mentor:KEY` or `student:KEY` tells its epochs (None: the sweep is not tracked)."""
        if self.tracked is None:
            return None
        return Progress(self.tracked.tracker, self.planned.labels[key], self.tracked.ready)


def _trial(config: dict[str, str], experiment: Experiment) -> None:
    """Tune's trainable: the job `config["job"]` names, `mentor:KEY` or `student:KEY`."""
    role, key = config["job"].split(":", 1)
    try:
        tune.report(_mentor_job(key, experiment) if role == "mentor" else _student_job(key, experiment))
    except UserError as e:  # a full disk, a black box gone: reported, not raised, which Tune would retry and
        # print with its traceback; the driver ends the sweep with its one line (`_tune`)
        tune.report({"job": config["job"], "made": [], "user_error": e.line()})


def _mentor_job(key: str, experiment: Experiment) -> dict[str, Any]:
    cfg = experiment.planned.mentors[key]
    outcome = train_mentor(cfg, MentorFolder.at(experiment.cache, key), in_trial=True,
                           progress=experiment.progress(f"mentor:{key}"))
    if experiment.tracked is not None:  # logged while other trials train (the driver waits for it at the end)
        experiment.tracked.tracker.log_mentor.remote(experiment.planned.labels[f"mentor:{key}"], outcome.result,
                                                     cfg.tracking.full("mentor"))
    return {"job": f"mentor:{key}", "made": [key] if outcome.made_now else []}


def _student_job(key: str, experiment: Experiment) -> dict[str, Any]:
    trial = experiment.planned.trials[key]
    mentor, data = experiment.inputs[key] if experiment.inputs is not None else _inputs_here(trial, experiment)
    out = experiment.out
    folder = trial_file(out, key).rsplit("/", 1)[0]
    student = train_student(trial.cfg, trial.student, mentor, data, folder, in_trial=True,
                            progress=experiment.progress(f"student:{key}"))
    record = TrialRecord(key, mentor_key(trial.cfg), trial.grid, trial.cfg.seed, trial.cfg.split.mentor_ratio,
                         trial.cfg.variant.removal_bound, trial.cfg.variant.ood_ratio, mentor.result, student)
    artifacts.write_json(record, trial_file(out, key))
    if experiment.tracked is not None:  # its scores now; its figures and model once it is its student's best
        experiment.tracked.tracker.log_student.remote(experiment.planned.labels[f"student:{key}"], record,
                                                      trial.cfg.tracking.full("student"))
    made = [mentor_key(trial.cfg)] if mentor.made_now else []
    return {"job": f"student:{key}", "made": made, "test_accuracy": student.test_accuracy,
            "relative_accuracy": student.relative_accuracy}


_HERE: dict[str, Any] = {}  # what this trial process made or checked already: mentors and sets, by identity


def _inputs_here(trial: Trial, experiment: Experiment) -> Inputs:
    """The trial's mentor (made here if no trial has begun it) and its set (built here, in this process, if no
    trial has), each checked against its manifests once in this process, however many of its trials use it."""
    key = mentor_key(trial.cfg)
    if key not in _HERE:
        _HERE[key] = train_mentor(trial.cfg, MentorFolder.at(experiment.cache, key), in_trial=True,
                                  progress=experiment.progress(f"mentor:{key}"))
    mentor = _HERE[key]
    identity = json.dumps([key, trial.cfg.variant.model_dump(), trial.cfg.seed, trial.cfg.method.key()])
    if identity not in _HERE:
        _HERE[identity] = student_set(trial.cfg, mentor, on_ray=False)
    return mentor, _HERE[identity]


def _driver_inputs(trials: list[Trial], cache: str) -> dict[str, Inputs]:
    """Every pending trial's mentor (loaded and checked once per mentor; an ensemble combined here) and set
    (built once per mentor and variant, by Ray Data where it is large), in the driver, while no trial runs."""
    mentors: dict[str, MentorOutcome] = {}
    inputs = {}
    for t in trials:
        key = mentor_key(t.cfg)
        if key not in mentors:
            mentors[key] = train_mentor(t.cfg, MentorFolder.at(cache, key))
        inputs[t.key] = (mentors[key], student_set(t.cfg, mentors[key]))
    return inputs


def _tune(name: str, jobs: list[str], base: SweepConfig, storage: str, experiment: Experiment,
          data_cpus: float, width: int | None = None) -> list[dict[str, Any]]:
    """Run `jobs` (`mentor:KEY`, `student:KEY`) as one Tune experiment, each trial on the resources of its
    role, a student's placement group with a bundle of `data_cpus` beside it where its Ray Data reads run
    (`streaming.py`), at most `width` at once (default: as many as fit); their last reports, also written to
    `STORAGE/NAME.json`."""
    roles = {job.split(":", 1)[0] for job in jobs}
    bundles = {role: [trial_resources(base, role)] + ([{"CPU": data_cpus}] if data_cpus and role == "student" else [])
               for role in roles}
    at_once = min(concurrency(base, ray.cluster_resources(), data_cpus if role == "student" else 0.0, role)
                  for role in roles)
    at_once = min(at_once, width or at_once)
    # Reused trial processes have PyTorch imported already: a new one starts and imports it again.
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, experiment=experiment),
                            lambda config: tune.PlacementGroupFactory(bundles[config["job"].split(":", 1)[0]])),
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=at_once),
        run_config=run_config(name, storage, base.fault_tolerance.trial_retries),
    )
    grid = tuner.fit()
    raise_failures(grid, name)
    reported = [r.metrics for r in grid]
    mistakes = [r["user_error"] for r in reported if r.get("user_error")]
    if mistakes:
        raise UserError(mistakes[0])
    artifacts.write_json(reported, f"{storage}/{name}.json")
    return reported


def run_stages(base: SweepConfig, planned: Plan, out: str, cache: str, watch: Stopwatch | None = None,
               tracked: Tracked | None = None) -> Counts:
    """Run every mentor and student trial not yet finished; return counts of what ran (and time each stage on
    `watch`). `tracked`: the tracker the trainings tell as they train."""
    watch = watch or Stopwatch()
    started_ms = int(time.time() * 1000)
    mentors, trials = planned.mentors, planned.trials
    pending = [k for k in trials if not artifacts.intact(trial_file(out, k))]
    needed: set[str] = set()

    def need(cfg: SweepConfig) -> None:
        needed.add(mentor_key(cfg))
        for other in cfg.mentor.needs():
            need(with_mentor(cfg, other))

    for k in pending:
        need(trials[k].cfg)
    to_make = [k for k in mentors if k in needed and not artifacts.intact(MentorFolder.at(cache, k).done)]
    # those made in trials (their kind's `in_trial`), needs first; the others where first needed
    waves = _waves([k for k in to_make if mentors[k].mentor.in_trial], mentors)
    in_trials = [k for wave in waves for k in wave]
    storage, made = f"{out}/tune", set()
    pools = {pool_key(c): c for c in (trials[k].cfg for k in pending) if c.pool_separate}
    always = any(trials[k].cfg.data.stream == "always" for k in pending)
    if pools or always:
        with watch("unlabelled pools"):
            for cfg in pools.values():
                prepare_pool(cfg, cache)
        for wave in waves:
            with watch("mentor trials"):
                done = _tune("mentors", [f"mentor:{k}" for k in wave], base, storage,
                             Experiment(planned, out, cache, tracked, None), 0.0)
            made |= {k for m in done for k in m["made"]}
        if pending:
            with watch("student sets"):
                inputs = _driver_inputs([trials[k] for k in pending], cache)
            streaming = any(streams(trials[k].cfg, inputs[k][1].table) for k in pending)
            with watch("student trials"):
                _tune("students", [f"student:{k}" for k in pending], base, storage,
                      Experiment(planned, out, cache, tracked, inputs), base.data.data_cpus if streaming else 0.0)
    elif in_trials or pending:
        # No more trial processes than trials that can train at once: a student waits on its mentor, so a
        # mentor and its one student start one process, not a second that would only wait and then go idle.
        width = max([len(pending)] + [len(wave) for wave in waves])
        with watch("trials"):
            done = _tune("trials", [f"mentor:{k}" for k in in_trials] + [f"student:{k}" for k in pending], base,
                         storage, Experiment(planned, out, cache, tracked, None), 0.0, width)
        made |= {k for m in done for k in m["made"]}  # not those another sweep made while this one waited
    made_count = len(made) + len([k for k in to_make if not mentors[k].mentor.in_trial])
    return Counts(mentors=len(mentors), mentors_trained=made_count, mentors_reused=len(mentors) - made_count,
                  trials=len(trials), trials_run=len(pending), trials_reused=len(trials) - len(pending),
                  rebuilt=sum(_rebuilt_since(MentorFolder.at(cache, k), started_ms) for k in mentors))


def _rebuilt_since(folder: MentorFolder, ms: int) -> int:
    """How many times since `ms` the mentor of `folder` found its cached artifacts damaged and made them again
    (recorded where it happened, in whichever trial: a count carried in trials' reports is lost with a trial
    killed after the rebuild)."""
    fs, path = artifacts.filesystem(folder.rebuilds)
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    stamps = [f.base_name.removesuffix(".json") for f in found]  # beside each record, its manifest
    return sum(1 for stamp in stamps if stamp.isdigit() and int(stamp) >= ms)


def _waves(keys: list[str], mentors: dict[str, SweepConfig]) -> list[list[str]]:
    """`keys` grouped by how many mentors deep their needs go (0: none), in plan order."""
    def depth(cfg: SweepConfig) -> int:
        return max((1 + depth(with_mentor(cfg, m)) for m in cfg.mentor.needs()), default=0)

    depths = {k: depth(mentors[k]) for k in keys}
    return [[k for k in keys if depths[k] == d] for d in sorted(set(depths.values()))]
