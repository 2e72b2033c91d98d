"""A sweep, driven from here: plan the grid (`planning.py`), run its trials on Ray Tune (`trials.py`: every
distinct mentor once, every student trial), log it to MLflow, write `sweep.json` and the report.

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
from typing import Any

import ray
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import stopping
from ..config import SweepConfig
from ..core import artifacts
from ..core.results import Counts, SweepSummary, TrialRecord
from ..errors import UserError, interruption
from ..report import SWEEP_FILE, write_report
from ..schema import ModelConfig
from .cluster import connect
from .mentor_folder import MentorFolder
from .mentor_stage import MentorOutcome
from .planning import Plan, plan, trial_file
from .pool import user_error
from .search import run_search
from .timing import Stopwatch
from .trials import Tracked, run_stages


@dataclass(frozen=True)
class SweepOutcome:
    counts: Counts
    report: str                       # report.md's text
    tracking_uri: str | None
    experiment_id: str | None
    timings_s: dict[str, float]       # the driver's stages, in order


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
        if type(getattr(e, "cause", None)).__name__ == "TrackingDown":  # the class's module imports MLflow's
            runs = [label.name for label in planned.labels.values()]
            raise UserError(f"MLflow tracking server {os.environ.get('MLFLOW_TRACKING_URI', '')} not answering: "
                            f"the sweep's run and its {len(runs)} runs not tracked ({', '.join(runs[:3])}"
                            f"{', …' if len(runs) > 3 else ''}); {out}/results.csv and report.md are written: run "
                            "the same command once it answers, which sends them and trains nothing again") from None
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
    calls, tracking = [tracker.try_again.remote()], base.tracking
    records = {k: TrialRecord.from_json(artifacts.read_json(trial_file(out, k))) for k in planned.trials}
    for key in planned.mentors:
        try:
            result = MentorOutcome.from_json(artifacts.read_json(MentorFolder.at(cache, key).done)).result
        except artifacts.TornArtifact:
            # Its cache folder removed since its trials finished (nothing then needs it made): their records hold
            # its scores; a mentor no record holds (a generation's teacher) keeps the run it has, if any.
            result = next((r.mentor for r in records.values() if r.mentor_key == key), None)
            print(f"deepmimic: warning: mentor {key} is not in the cache {cache} any more: its MLflow run is "
                  + ("logged from its students' records, without its checkpoint" if result else "not logged again"),
                  file=sys.stderr, flush=True)
            if result is None:
                continue
        calls.append(tracker.log_mentor.remote(planned.labels[f"mentor:{key}"], result, tracking.full("mentor")))
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
    return _every(calls)[-1]  # one actor: the calls run in this order


def _every(calls: list[Any]) -> list[Any]:
    """Each call's answer, or the first call's error once every call has ended: Ray prints the error of a
    result never fetched, its stack and all, when the reference is freed (after the sweep's one line)."""
    answers, first = [], None
    for call in calls:
        try:
            answers.append(ray.get(call))
        except Exception as e:
            first = first or e
    if first is not None:
        raise first
    return answers


def start_tracker(uri: str, experiment: str, out: str, artifact_root: str | None) -> Tracked:
    """The sweep's `Tracker` as a Ray actor on this (the driver's) node, where a local store's file is. It starts
    (a process, MLflow's imports, the store's set-up) beside the first trials, which tell it their epochs
    without waiting for it. It gets the driver's MLFLOW_* variables (credentials, retries, timeouts): an actor
    of a running cluster has the cluster's environment, not the shell's that ran `deepmimic sweep`."""
    from ..tracking import Tracker

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    mlflow_env = {name: value for name, value in os.environ.items() if name.startswith("MLFLOW_")}
    tracker = ray.remote(Tracker).options(num_cpus=0, scheduling_strategy=here,
                                          runtime_env={"env_vars": mlflow_env}).remote(
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
