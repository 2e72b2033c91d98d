"""A sweep, driven from here: plan the grid, run it on Ray Tune in two stages
(every distinct mentor once, then every student trial), log it to MLflow,
write `sweep.json` and the report.

Mentors and their soft labels live in a cache addressed by the hash of what
determines them, so students of this sweep and of later sweeps reuse them.
A finished trial leaves `trials/KEY/trial.json` and its manifest; a rerun skips it
(and redoes one whose file does not match its manifest).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Callable

import ray
import yaml
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import stopping
from ..config import SweepConfig
from ..core import artifacts
from ..core.results import Counts, SweepSummary, TrialRecord
from ..errors import UserError, interruption
from ..report import SWEEP_FILE, write_report
from ..run_names import RunLabel, model_params, name, shared, unique, value_text, varying
from ..schema import ModelConfig
from .cluster import concurrency, connect, raise_failures, run_config, trial_resources
from .keys import mentor_key, pool_key, student_key, with_mentor
from .mentor_folder import MentorFolder
from .mentor_stage import MentorOutcome, train_mentor
from .pool import user_error
from .progress import Progress
from .runs import streams
from .search import run_search
from .student_sets import StudentSet
from .student_stage import prepare_pool, student_set, train_student
from .timing import Stopwatch


@dataclass(frozen=True)
class Trial:
    key: str
    cfg: SweepConfig
    student: ModelConfig
    grid: dict[str, Any]      # this trial's axis values


@dataclass(frozen=True)
class Plan:
    mentors: dict[str, SweepConfig]   # distinct mentors by key, an ensemble's members first
    trials: dict[str, Trial]          # student trials by key, in grid order
    labels: dict[str, RunLabel]       # every mentor's and trial's MLflow run, by `mentor:KEY` and `student:KEY`


@dataclass(frozen=True)
class SweepOutcome:
    counts: Counts
    report: str                       # report.md's text
    tracking_uri: str | None
    experiment_id: str | None
    timings_s: dict[str, float]       # the driver's stages, in order


def plan(points: list[tuple[dict[str, Any], SweepConfig]]) -> Plan:
    """Distinct mentors by key (those a mentor needs before it), and student trials by key, in grid order."""
    mentors: dict[str, SweepConfig] = {}
    trials: dict[str, Trial] = {}
    served: dict[str, list[dict[str, Any]]] = {}  # each mentor's grid points (and those of mentors needing it)

    def add(cfg: SweepConfig, values: dict[str, Any]) -> None:
        for needed in cfg.mentor.needs():
            add(with_mentor(cfg, needed), values)
        mentors.setdefault(mentor_key(cfg), cfg)
        served.setdefault(mentor_key(cfg), []).append(values)

    for values, cfg in points:
        add(cfg, values)
        for student in cfg.students:
            key = student_key(cfg, student)
            trials[key] = Trial(key, cfg, student, {**values, "student": student.name})
    return Plan(mentors, trials, _labels(mentors, trials, served, [v for v, _ in points]))


def _labels(mentors: dict[str, SweepConfig], trials: dict[str, Trial], served: dict[str, list[dict[str, Any]]],
            points: list[dict[str, Any]]) -> dict[str, RunLabel]:
    """Each run's MLflow name (its model and the grid values that tell it apart, unique in the sweep), its
    params (every resolved setting, and the grid values) and its tags (the grid values)."""
    axes = varying(points)
    names = {f"mentor:{k}": name(cfg.mentor.name, shared(served[k], [a for a in axes if a != "mentor"]), axes)
             for k, cfg in mentors.items()}
    names |= {f"student:{k}": name(t.student.name, t.grid, axes) for k, t in trials.items()}
    names = unique(names)
    labels = {}
    for k, cfg in mentors.items():
        grid = shared(served[k], list(points[0]) if points else [])
        params = _mentor_params(cfg) | _tags(grid)
        labels[f"mentor:{k}"] = RunLabel(f"mentor:{k}", "mentor", names[f"mentor:{k}"], params, _tags(grid))
    for k, t in trials.items():
        params = model_params(t.cfg, t.student, "student") | {"mentor": t.cfg.mentor.name,
                                                               "mentor_key": mentor_key(t.cfg)} | _tags(t.grid)
        labels[f"student:{k}"] = RunLabel(f"student:{k}", "student", names[f"student:{k}"], params, _tags(t.grid))
    return labels


def _tags(grid: dict[str, Any]) -> dict[str, str]:
    return {axis: value_text(value) for axis, value in grid.items()}


def trial_file(out: str, key: str) -> str:
    return f"{out}/trials/{key}/trial.json"


@dataclass(frozen=True)
class Tracked:
    """The sweep's tracker actor and the reference of its first call (`progress.Progress.ready`)."""

    tracker: Any
    ready: tuple[Any, ...]

    def progress(self, planned: Plan, key: str) -> Progress:
        return Progress(self.tracker, planned.labels[key], self.ready)


def _progress(tracked: Tracked | None, planned: Plan, key: str) -> Progress | None:
    return tracked.progress(planned, key) if tracked is not None else None


def _mentor_trial(config: dict[str, Any], planned: Plan, cache: str, tracked: Tracked | None) -> None:
    key = config["mentor"]
    outcome = train_mentor(planned.mentors[key], MentorFolder.at(cache, key), in_trial=True,
                           progress=_progress(tracked, planned, f"mentor:{key}"))
    if tracked is not None:  # logged while other trials train (the driver waits for it at the end)
        full = planned.mentors[key].tracking.full("mentor")
        tracked.tracker.log_mentor.remote(planned.labels[f"mentor:{key}"], outcome.result, full)
    tune.report({"mentor": key, "made_now": outcome.made_now, "test_accuracy": outcome.result.test_accuracy})


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
        if key not in mentors:  # made in its trial; one made in the driver (an ensemble) is made here
            mentors[key] = train_mentor(t.cfg, MentorFolder.at(cache, key))
        inputs[t.key] = (mentors[key], student_set(t.cfg, mentors[key]))
    return inputs


def _student_trial(config: dict[str, Any], planned: Plan, inputs: dict[str, tuple[MentorOutcome, StudentSet]],
                   out: str, tracked: Tracked | None) -> None:
    trial = planned.trials[config["trial"]]
    mentor, data = inputs[trial.key]
    folder = os.path.dirname(trial_file(out, trial.key))
    student = train_student(trial.cfg, trial.student, mentor, data, folder, in_trial=True,
                            progress=_progress(tracked, planned, f"student:{trial.key}"))
    record = TrialRecord(trial.key, mentor_key(trial.cfg), trial.grid, trial.cfg.seed, trial.cfg.split.mentor_ratio,
                         trial.cfg.variant.removal_bound, trial.cfg.variant.ood_ratio, mentor.result, student)
    artifacts.write_json(record, trial_file(out, trial.key))
    if tracked is not None:  # its scores now; its figures and model once it is known to be its student's best
        tracked.tracker.log_student.remote(planned.labels[f"student:{trial.key}"], record,
                                           trial.cfg.tracking.full("student"))
    tune.report({"trial": trial.key, "student": trial.student.name, "test_accuracy": student.test_accuracy,
                 "relative_accuracy": student.relative_accuracy})


def _tune(role: str, fn: Callable, axis: str, keys: list[str], base: SweepConfig, storage: str,
          data_cpus: float = 0.0) -> list[dict]:
    """Run one stage's trials, on the resources of its `role` ("mentor" or "student"); their last reported
    metrics, also written to `STORAGE/ROLEs.json`. `data_cpus` > 0: each trial's placement group has a bundle of
    that many CPUs beside its own, where its Ray Data reads run (`streaming.py`)."""
    name = f"{role}s"
    bundles = [trial_resources(base, role)] + ([{"CPU": data_cpus}] if data_cpus else [])
    at_once = concurrency(base, ray.cluster_resources(), data_cpus, role)
    # Reused trial processes have PyTorch imported already: a new one starts and imports it again.
    tuner = tune.Tuner(
        tune.with_resources(fn, tune.PlacementGroupFactory(bundles)),
        param_space={axis: tune.grid_search(keys)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=at_once),
        run_config=run_config(name, storage, base.fault_tolerance.trial_retries),
    )
    grid = tuner.fit()
    raise_failures(grid, name)
    reported = [r.metrics for r in grid]
    artifacts.write_json(reported, f"{storage}/{name}.json")
    return reported


def run_stages(base: SweepConfig, planned: Plan, out: str, cache: str, watch: Stopwatch | None = None,
               tracked: Tracked | None = None) -> Counts:
    """Run every mentor and student trial not yet finished; return counts of what ran (and time each stage
    on `watch`). `tracked`: the tracker the trainings tell as they train.

    Mentors are made in waves: a wave's mentors need only mentors of earlier waves. Those made in trials (their
    kind's `in_trial`) train in one Tune stage per wave; the others are made where first needed (by a later
    trial, or in the driver before the students)."""
    watch = watch or Stopwatch()
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
    in_trials = [k for k in to_make if mentors[k].mentor.in_trial]
    storage, made = f"{out}/tune", len(to_make) - len(in_trials)
    pools = {pool_key(c): c for c in (trials[k].cfg for k in pending) if c.pool_separate}
    if pools:
        with watch("unlabelled pools"):
            for cfg in pools.values():
                prepare_pool(cfg, cache)
    for wave in _waves(in_trials, mentors):
        with watch("mentor trials"):
            done = _tune("mentor", tune.with_parameters(_mentor_trial, planned=planned, cache=cache, tracked=tracked),
                         "mentor", wave, base, storage)
        made += sum(bool(m["made_now"]) for m in done)  # not those another sweep made while this one waited
    if pending:
        with watch("student sets"):
            inputs = _student_inputs([trials[k] for k in pending], cache)
        streaming = [k for k in pending if streams(trials[k].cfg, inputs[k][1].table)]
        with watch("student trials"):
            _tune("student", tune.with_parameters(_student_trial, planned=planned, inputs=inputs, out=out,
                                                   tracked=tracked), "trial", pending, base, storage,
                  base.data.data_cpus if streaming else 0.0)
    return Counts(mentors=len(mentors), mentors_trained=made, mentors_reused=len(mentors) - made,
                  trials=len(trials), trials_run=len(pending), trials_reused=len(trials) - len(pending))


def _waves(keys: list[str], mentors: dict[str, SweepConfig]) -> list[list[str]]:
    """`keys` grouped by how many mentors deep their needs go (0: none), in plan order."""
    def depth(cfg: SweepConfig) -> int:
        return max((1 + depth(with_mentor(cfg, m)) for m in cfg.mentor.needs()), default=0)

    depths = {k: depth(mentors[k]) for k in keys}
    return [[k for k in keys if depths[k] == d] for d in sorted(set(depths.values()))]


def run_sweep(base: SweepConfig, points: list[tuple[dict[str, Any], SweepConfig]], out: str, cache: str,
              tracked: Tracked | None = None, watch: Stopwatch | None = None, command: str = "") -> SweepOutcome:
    """Run what is not yet finished, write `sweep.json` and the report, then complete every mentor's and
    trial's MLflow run (opened live by the `tracker` actor as each trained; runs an earlier, interrupted
    invocation logged are kept, not repeated) and register each student's best trial.

    Interrupted (SIGINT, SIGTERM), it writes the report of the trials that finished, marked partial."""
    planned, watch = plan(points), watch or Stopwatch()

    def partial() -> None:
        finished = sum(artifacts.intact(trial_file(out, k)) for k in planned.trials)
        if finished:
            counts = Counts(len(planned.mentors), trials=len(planned.trials), trials_reused=finished)
            _summarise(base, planned, out, counts, partial=True)
        if tracked is not None:
            with contextlib.suppress(Exception):  # the runs stay RUNNING in the UI; a rerun continues them
                ray.get(tracked.tracker.interrupted.remote(), timeout=10)

    with stopping.on_stop(partial):
        try:
            counts = run_stages(base, planned, out, cache, watch, tracked)
        except BaseException as e:
            if interruption(e) is not None:
                stopping.finish()
            raise
    with watch("report and plots"):
        text, files = _summarise(base, planned, out, counts)
    if tracked is None:
        return SweepOutcome(counts, text, None, None, watch.times)
    try:
        with watch("MLflow logging"):
            uri, experiment = _track(tracked.tracker, base, planned, out, cache, counts, files,
                                     _description(command, base, text))
    except Exception as e:  # MLflow's and its stores' many errors: the results are written, say so
        if user_error(e):
            raise user_error(e) from None
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        raise UserError(f"MLflow logging failed ({why}); {out}/results.csv and report.md are written: "
                        "rerun the same command to log the rest") from None
    return SweepOutcome(counts, text, uri, experiment, watch.times)


def _summarise(base: SweepConfig, planned: Plan, out: str, counts: Counts,
               partial: bool = False) -> tuple[str, list[str]]:
    summary = SweepSummary(base.name, base.dataset.name, base.paper, tuple(base.grid), tuple(planned.trials), counts,
                           base.model_dump(), partial)
    artifacts.write_json(summary, f"{out}/{SWEEP_FILE}")
    return write_report(out)


def _description(command: str, base: SweepConfig, report: str) -> str:
    """The parent run's description: how the sweep was started, its search space, the report's main table."""
    table = next((block for block in report.split("\n\n") if block.lstrip().startswith("|")), "")
    space = yaml.safe_dump(base.grid, sort_keys=False).strip() if base.grid else "(one point)"
    return (f"`{command}`\n\nSearch space:\n```yaml\n{space}\n```\n\n{table}\n\n"
            "Every run's settings are its params; the grid values are also tags.")


def _track(tracker: Any, base: SweepConfig, planned: Plan, out: str, cache: str, counts: Counts,
           files: list[str], description: str) -> tuple[str, str]:
    """Complete every run (final scores and checkpoints; figures and models where `tracking.models` says),
    register each student's best trial as `<sweep>-<student>`, and close the parent; the tracking URI and the
    experiment's id."""
    calls, tracking = [], base.tracking
    for key in planned.mentors:
        outcome = MentorOutcome.from_json(artifacts.read_json(MentorFolder.at(cache, key).done))
        calls.append(tracker.log_mentor.remote(planned.labels[f"mentor:{key}"], outcome.result,
                                               tracking.full("mentor")))
    records = {k: TrialRecord.from_json(artifacts.read_json(trial_file(out, k))) for k in planned.trials}
    by_student: dict[str, list[TrialRecord]] = {}
    for r in records.values():
        by_student.setdefault(r.student.name, []).append(r)
    best = {s: max(trials, key=lambda r: (r.student.relative_accuracy, r.student.test_accuracy)).key
            for s, trials in by_student.items()}
    calls += [tracker.log_student.remote(planned.labels[f"student:{k}"], r,
                                         tracking.full("student", best[r.student.name] == k))
              for k, r in records.items()]
    for student, key in best.items():
        record = records[key]
        tags = planned.labels[f"student:{key}"].tags | {
            "relative_accuracy": f"{record.student.relative_accuracy:.4f}",
            "test_accuracy": f"{record.student.test_accuracy:.4f}", "sweep": base.name}
        calls.append(tracker.register.remote(f"{base.name}-{student}", f"student:{key}", tags))
    relative = {s: [r.student.relative_accuracy for r in trials] for s, trials in by_student.items()}
    params = {"grid_axes": ",".join(base.grid), "dataset": base.dataset.name, "trials": len(planned.trials),
              "mentors": len(planned.mentors)}
    calls.append(tracker.finish.remote(params, counts, files, description, relative))
    calls.append(tracker.where.remote())
    return ray.get(calls)[-1]  # one actor: the calls run in this order


def start_tracker(uri: str, experiment: str, out: str, artifact_root: str | None) -> Tracked:
    """The sweep's `Tracker` as a Ray actor on this (the driver's) node, where a local store's file is. It starts
    (a process, MLflow's imports, the store's set-up) beside the first trials, which tell it their epochs
    without waiting for it."""
    from ..tracking import Tracker

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    tracker = ray.remote(Tracker).options(num_cpus=0, scheduling_strategy=here).remote(
        uri, experiment, out, artifact_root)
    return Tracked(tracker, (tracker.where.remote(),))


def sweep(base: SweepConfig, points: list[tuple[dict[str, Any], SweepConfig]], out: str, cache: str) -> SweepOutcome:
    """`deepmimic sweep`: check where it tracks and that Ray answers before writing anything, then run it,
    tracked in MLflow (a server named by MLFLOW_TRACKING_URI, else a SQLite store in `out`) as it trains."""
    # Imported here, not with the module: every trial process imports this module for its function, and would
    # pay MLflow's imports (the sweep's `Tracker` actor alone writes to MLflow).
    from ..tracking import check_reachable, check_store, default_uri

    server = os.environ.get("MLFLOW_TRACKING_URI")
    if not server and artifacts.is_uri(out):
        raise UserError(f"--out {out}: a sweep on remote storage needs MLFLOW_TRACKING_URI (a tracking server)")
    uri = server or default_uri(out)
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)  # before anything is written
    check_store(uri)
    watch = Stopwatch()
    with watch("Ray start"):
        connect()  # a cluster that cannot be reached fails here, before anything is written too
    if not artifacts.is_uri(out):
        os.makedirs(out, exist_ok=True)
    tracked = start_tracker(uri, base.name, out, None if server else f"{os.path.abspath(out)}/mlartifacts")
    command = shlex.join(["deepmimic", *sys.argv[1:]]) if sys.argv[0].endswith(("deepmimic", "cli.py")) else ""
    if base.search is not None:  # the student it finds joins the others, trained and registered as they are
        with watch("student search"):
            found = run_search(base, out, cache)
        base, points = with_student(base, found), [(values, with_student(cfg, found)) for values, cfg in points]
    return run_sweep(base, points, out, cache, tracked, watch, command)


def with_student(cfg: SweepConfig, student: ModelConfig) -> SweepConfig:
    return cfg.model_copy(update={"students": [*cfg.students, student]})


def _mentor_params(cfg: SweepConfig) -> dict[str, Any]:
    """A mentor run's params: those of the network it is, where it is one, and its kind's own."""
    return model_params(cfg, dict(cfg.mentor.models()).get(""), "mentor") | cfg.mentor.params()
