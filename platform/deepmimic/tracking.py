"""MLflow tracking: a parent run per sweep, a nested run per mentor and student, written as they train.

One `Tracker` writes a sweep's store. The sweep runs it as a Ray actor on the driver's node
(`distributed/sweep.start_tracker`): every training run, wherever it trains (a trial's process, a Ray
Train worker, another node), sends its start, epochs and end to that actor fire-and-forget, and the
trials and the driver add the final scores and checkpoints as trials finish, and figures and MLflow models
for the runs `tracking.models` names (the mentors and each student's best, by default). One
writer rather than a tracking server of the sweep's own: the default store is one SQLite file, which
several processes writing at once would lock against each other; an `mlflow server` would cost seconds to
start on every sweep (benchmarks/RESULTS.md) and a port that other nodes must reach, where Ray already carries
the calls, in order from each caller. With MLFLOW_TRACKING_URI naming a server, the same actor writes
there.

A run is found by its key tag, so a resumed sweep (or a retried trial) continues its runs: epochs are
logged once (the steps already in the store are skipped), final scores, figures and models once.

A tracking server that stops answering: each of MLflow's calls retries for about a minute (`RETRIES`: an outage
shorter than that costs the calls waiting, queued in the actor, nothing); past it the tracker counts the server
down and answers every call at once with `TrackingDown`, trying it again every `PROBE_EVERY_S`. Training never
waits for it, and nothing is lost: the epochs of live calls it missed wait in the actor for the next call, the
driver logs every run again from the sweep's files at the end, and a server still down then is one line
(`distributed/sweep.py`) saying how to send them later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from .core.artifacts import is_uri
from .core.results import Counts, Epoch, MentorResult, ModelResult, TrialRecord
from .errors import UserError
from .run_names import RunLabel

# MLflow's own default, 7 retries with back-off, waited about 4 minutes a call on a server gone for good; 5 wait
# about one (a user's MLFLOW_HTTP_REQUEST_MAX_RETRIES wins).
RETRIES = "5"
PROBE_EVERY_S = 10.0

KEY_TAG = "deepmimic.key"
ROLE_TAG = "deepmimic.role"
MODEL_TAG = "deepmimic.model_uri"   # set once its MLflow model is logged
LOGGED_TAG = "deepmimic.logged"     # set once the run's final scores and checkpoint are in
FIGURES_TAG = "deepmimic.figures"   # set once its figures are in
NOTE_TAG = "mlflow.note.content"    # the description the UI shows
# The UI opens an experiment in its model-training view, not its GenAI view ("Evaluations"), with this tag.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
EPOCH_METRICS = ("train_loss", "test_accuracy", "test_loss")


def default_uri(out: str) -> str:
    """A local store under the sweep's folder, which `mlflow ui` opens."""
    return f"sqlite:///{os.path.abspath(out)}/mlflow.db"


def check_reachable(uri: str) -> None:
    """A tracking server answers its health check within seconds (MLflow's own client would retry for minutes)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
    except urllib.error.HTTPError:
        pass  # it answered (an auth proxy may refuse /health): reachable
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"MLflow tracking URI {uri}: unreachable ({getattr(e, 'reason', e)})") from None


SHARED_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "ceph", "glusterfs", "fuse.")


def shared_file_system(path: str, mounts: str | None = None) -> str | None:
    """The type of the network file system `path` lies on (by the longest mount point above it in
    /proc/mounts, or `mounts` given as its text), or None for a local one or where that cannot be told."""
    if mounts is None:
        try:
            with open("/proc/mounts") as f:
                mounts = f.read()
        except OSError:
            return None
    path, deepest, kind = os.path.abspath(path), -1, ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > deepest:
            deepest, kind = len(point), fields[2]
    return kind if kind.startswith(SHARED_FILE_SYSTEMS) else None


def check_store(uri: str) -> None:
    """A local SQLite store that exists must be MLflow's: a corrupt or foreign file is named, untouched
    (MLflow would add its tables to a foreign database, or fail deep in SQLAlchemy on a corrupt one).
    One on a shared file system gets a one-line warning: this sweep writes it from one process, but
    sweeps or jobs writing it at once from several nodes would lock each other out."""
    if not uri.startswith("sqlite:///"):
        return
    path = uri.removeprefix("sqlite:///")  # sqlite:////abs/path or sqlite:///relative/path
    shared = shared_file_system(os.path.dirname(path))
    if shared:
        print(f"deepmimic: warning: MLflow store {path} is SQLite on a shared file system ({shared}): one "
              "sweep writes it from one process, several at once from several nodes would lock each other out: "
              "give them a tracking server (MLFLOW_TRACKING_URI)", file=sys.stderr, flush=True)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    advice = "move it aside (its runs are lost to the UI, the sweep's outputs are not) or set MLFLOW_TRACKING_URI"
    try:
        found = _tables(path)
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path}: not a readable MLflow store ({e}): {advice}") from None
    if "experiments" not in found or "runs" not in found:
        raise UserError(f"{path}: an SQLite database, but not an MLflow store: {advice}")


def _tables(path: str) -> set[str]:
    """The names of the tables of the SQLite database at `path`, which exists, read without writing to it; but a
    writer killed mid-transaction (a driver or tracker ended by SIGKILL) leaves a hot journal, which only a
    read-write connection may roll back, as MLflow's own first read would: SQLite's recovery, not ours."""
    def read(mode: str) -> set[str]:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode={mode}", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    try:
        return read("ro")
    except sqlite3.DatabaseError as e:
        if getattr(e, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":  # Python 3.11 names it
            raise
        return read("rw")


def new_store(path: str) -> None:
    """A SQLite store that does not exist yet begins as a copy of an empty one MLflow made once per MLflow
    version, kept in the user's cache: MLflow makes a new store by running its whole chain of schema
    migrations, a second or more in every new sweep folder (benchmarks/RESULTS.md). Where the cache cannot
    be written, MLflow makes the store itself."""
    import shutil

    import mlflow

    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deepmimic")
    template = os.path.join(cache, f"mlflow-{mlflow.__version__}.db")
    try:
        if not os.path.exists(template):
            os.makedirs(cache, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as d:
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db").search_experiments()  # made and migrated
                os.replace(f"{d}/mlflow.db", template)  # whole, or not there: a racing tracker makes its own
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        shutil.copyfile(template, partial)
        os.replace(partial, path)
    except OSError:
        return


class TrackingDown(Exception):
    """The tracking server did not answer a call, after MLflow's retries or while counted down."""


def _unreachable(error: BaseException) -> bool:
    """Whether `error` is a server not answering (refused, reset, timed out, retries exhausted), not a bad call."""
    import requests

    text = str(error)
    return isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)) or any(
        sign in text for sign in ("Max retries exceeded", "Connection refused", "Failed to establish",
                                  "Connection aborted", "Read timed out"))


def _while_up(live: bool = False) -> Any:
    """A tracker call that fails at once while the server is counted down (tried again every `PROBE_EVERY_S`), and
    counts it down when the call finds it unreachable. `live`: a training's progress, sent fire-and-forget and
    logged again at the end: dropped rather than failed (Ray would print every dropped call's error)."""
    import functools

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Tracker, *args: Any, **kwargs: Any) -> Any:
            try:
                if self.down_at is not None and time.monotonic() - self.down_at < PROBE_EVERY_S:
                    raise TrackingDown(f"{self.uri}: not answering")
                try:
                    answer = method(self, *args, **kwargs)
                except Exception as e:
                    if not _unreachable(e):
                        raise
                    self.down_at = time.monotonic()
                    raise TrackingDown(f"{self.uri}: not answering ({type(e).__name__})") from None
            except TrackingDown:
                if live:
                    return None
                raise
            self.down_at = None
            return answer

        return call

    return wrap


def _ms() -> int:
    return int(time.time() * 1000)


def _epoch_metrics(epoch: Epoch) -> list[tuple[str, float]]:
    """An epoch's MLflow metrics (each `epoch_NAME`): its scores, and its loss's own figures."""
    scores = [(name, getattr(epoch, name)) for name in EPOCH_METRICS] + list(epoch.train_stats.items())
    return [(name, float(v)) for name, v in scores if v is not None]


def _params(values: dict[str, Any]) -> list[Any]:
    """MLflow params, each value cut to the store's 6,000 characters."""
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items()]


class Tracker:
    """One sweep's MLflow runs: the parent, and a nested run per model, keyed by `RunLabel.key`.

    MLflow is imported where it is used, not with this module: every process that holds a handle on the
    tracker's actor (each trial's) imports the module of its class, and would pay MLflow's imports."""

    def __init__(self, uri: str, experiment: str, sweep_dir: str, artifact_root: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", RETRIES)  # read by MLflow at each request
        from mlflow.tracking import MlflowClient

        self.down_at: float | None = None     # when a call last found the server unreachable
        # MLflow warns of pickle on every TorchScript model it saves (torch.jit.save, which runs no pickled code).
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        if uri.startswith("sqlite:///"):
            new_store(uri.removeprefix("sqlite:///"))
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # else the registry is ./mlflow.db
        self.uri = uri
        try:
            exp = self.client.get_experiment_by_name(experiment)
        except Exception as e:  # an unreachable server or a broken store: the user's to fix
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            raise UserError(f"MLflow tracking URI {uri}: unreachable ({why})") from None
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=artifact_root, tags={KIND_TAG: KIND})
        if exp and exp.tags.get(KIND_TAG) != KIND:
            self.client.set_experiment_tag(self.experiment_id, KIND_TAG, KIND)
        if uri.startswith("sqlite:"):
            self._hide_empty_default()
        self.labels: dict[str, RunLabel] = {}
        self.runs: dict[str, str] = {}        # key → run id, once opened or found
        self.last_step: dict[str, int] = {}   # key → the last epoch in the store
        self.unlogged: dict[str, dict[int, Epoch]] = {}  # key → epochs not in the store yet, by number
        self.stored = self._stored_runs()     # key → run id of the runs the store held when this tracker began
        # A URI as it is: made absolute, it would take the cwd of whichever process runs the tracker.
        where = f"sweep:{sweep_dir if is_uri(sweep_dir) else os.path.abspath(sweep_dir)}"
        self.parent = self.stored.get(where) or self.client.create_run(
            self.experiment_id, run_name=experiment,
            tags={KEY_TAG: where, "deepmimic.sweep_dir": sweep_dir}).info.run_id

    def _hide_empty_default(self) -> None:
        """MLflow makes an experiment `Default` in every new SQL store; the sweep's own store has no use for
        it, so it goes to the trash (MLflow recreates one that is missing, not one that is deleted)."""
        from mlflow.exceptions import MlflowException

        try:
            default = self.client.get_experiment("0")
        except MlflowException:
            return
        if default.lifecycle_stage == "active" and not self.client.search_runs(["0"], max_results=1):
            self.client.delete_experiment("0")

    def try_again(self) -> None:
        """Forget that the server was counted down: the sweep's last calls, its runs' completion, try it once
        more rather than fail at once (it may be back within `PROBE_EVERY_S`)."""
        self.down_at = None

    def where(self) -> tuple[str, str]:
        """The tracking URI and the experiment's id."""
        return self.uri, self.experiment_id

    def _stored_runs(self) -> dict[str, str]:
        """Every run of the experiment in the store, by key: one paged search when the tracker starts (a resumed
        sweep, a rerun), where a search by tag for each run cost every trial a query."""
        found, token = {}, None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            found |= {r.data.tags[KEY_TAG]: r.info.run_id for r in page if KEY_TAG in r.data.tags}
            token = page.token
            if not token:
                return found

    def _open(self, label: RunLabel | str, start_ms: int | None = None) -> str:
        """The run of a label (or of a key already labelled): found in the store (a resumed sweep, a retried
        trial) or created now."""
        if isinstance(label, RunLabel):
            self.labels[label.key] = label
        key = label if isinstance(label, str) else label.key
        if key in self.runs:
            return self.runs[key]
        run = self.stored.get(key)
        if run is None:
            label = self.labels[key]  # a KeyError: a run's epochs came before its start (see `epochs`)
            tags = {KEY_TAG: key, ROLE_TAG: label.role, "mlflow.parentRunId": self.parent, **label.tags}
            run = self.client.create_run(self.experiment_id, start_time=start_ms, tags=tags,
                                         run_name=label.name).info.run_id
            self.client.log_batch(run, params=_params(label.params))
            self.last_step[key] = 0
        else:
            history = self.client.get_metric_history(run, "epoch_train_loss")
            self.last_step[key] = max((m.step for m in history), default=0)
        self.runs[key] = run
        return run

    @_while_up(live=True)
    def started(self, label: RunLabel, start_ms: int, history: list[Epoch] = ()) -> None:
        """A training run began (`history`: the epochs a restored checkpoint brings)."""
        known = label.key in self.runs or label.key in self.stored
        run = self._open(label, start_ms)
        if known and self.client.get_run(run).info.status != "RUNNING":  # a run made now is running
            self.client.update_run(run, "RUNNING")
        self.epochs(label.key, history)

    def epochs(self, key: str, history: list[Epoch]) -> None:
        """Epochs' metrics, each once and stamped with its epoch's end (now, for files written before epochs
        kept it): those at or before the store's last step are skipped (and all of them for a run whose start
        never arrived: the final logging brings them). Epochs a call brought while the server was down wait
        here for the next call: else a run still training once the server is back would leave a gap that its
        final logging, which skips what is at or before the store's last step, never fills."""
        if key not in self.labels and key not in self.runs:
            return
        self.unlogged.setdefault(key, {}).update((e.epoch, e) for e in history)
        self._log_epochs(key)

    @_while_up(live=True)
    def _log_epochs(self, key: str) -> None:
        from mlflow.entities import Metric

        run, now = self._open(key), _ms()
        new = [e for n, e in sorted(self.unlogged[key].items()) if n > self.last_step[key]]
        metrics = [Metric(f"epoch_{name}", float(v), e.ended_ms or now, e.epoch) for e in new
                   for name, v in _epoch_metrics(e)]
        if metrics:
            self.client.log_batch(run, metrics=metrics)
            self.last_step[key] = new[-1].epoch
        del self.unlogged[key]

    @_while_up(live=True)
    def ended(self, key: str, end_ms: int) -> None:
        """The training run finished: its MLflow run's duration is the training's."""
        self.client.set_terminated(self._open(key), "FINISHED", end_ms)

    def _log_model_run(self, label: RunLabel, result: ModelResult, extra: dict[str, float | None],
                       plots_of: list[ModelResult], galleries: str | None, full: bool) -> str:
        """A run's final scores and its checkpoint (opened now if it never ran live: a mentor trained by an
        earlier sweep, a black box); where `full`, its figures and its MLflow model too. Each once: what an
        earlier invocation logged is not logged again."""
        from mlflow.entities import Metric, RunTag

        run = self._open(label, result.started_ms)  # a run never opened live starts when its training did
        info = self.client.get_run(run)
        done, checkpoint = info.data.tags, result.checkpoint if result.checkpoint and os.path.isdir(
            result.checkpoint) else None
        if LOGGED_TAG not in done:
            self.epochs(label.key, list(result.history))
            finals = {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
                      "params": result.params, "inference_time_s": result.inference_time_s, **extra}
            now = result.ended_ms or _ms()
            metrics = [Metric(k, float(v), now, 0) for k, v in finals.items()
                       if v is not None and k not in info.data.metrics]  # a black box has no params
            known = {"parameters": result.params} if result.params and "parameters" not in info.data.params else {}
            if checkpoint:
                self.client.log_artifacts(run, checkpoint, "checkpoint")
            self.client.log_batch(run, metrics=metrics, params=_params(known), tags=[RunTag(LOGGED_TAG, "1")])
        if full and FIGURES_TAG not in done:
            from . import plots  # matplotlib: here, not in every trial that loads this module for its handle

            with tempfile.TemporaryDirectory() as d:
                # Drawn where it trained by older versions; else here, for the runs a user opens.
                figures = [f for f in result.figures if os.path.isfile(f)] or list(plots.run_figures(plots_of, d))
                if galleries and os.path.isfile(galleries):
                    figures.append(plots.gallery_figure(galleries))
                for f in figures:
                    self.client.log_artifact(run, f, "plots")
            self.client.set_tag(run, FIGURES_TAG, "1")
        if full and MODEL_TAG not in done and checkpoint:
            self._log_model(run, checkpoint, info.info.end_time or result.ended_ms)
        elif info.info.status != "FINISHED":
            self.client.set_terminated(run, "FINISHED", result.ended_ms)
        return run

    def _log_model(self, run: str, checkpoint: str, end_ms: int | None) -> None:
        """The model as an MLflow PyTorch model: TorchScript (it loads without our code), [0, 1] images in,
        probabilities out, so `mlflow models serve` answers the black-box protocol; the run ends at `end_ms`."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        # Sets the fluent API's tracking URI for one block and restores it (private; `mlflow.set_tracking_uri`
        # alone would also export MLFLOW_TRACKING_URI to every later child process of whoever runs the tracker).
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        from .core import checkpoints
        from .core.serving import black_box

        shape = tuple(checkpoints.model_meta(checkpoint)["shape"])
        model = black_box(checkpoints.load_model(checkpoint), shape)
        example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
        with torch.no_grad():
            signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
        # Only the fluent API logs models, and it ends the run it resumes: the training's end is put back.
        with _use_tracking_uri(self.uri), mlflow.start_run(run_id=run):
            logged = mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=example,
                                              serialization_format="pickle",  # TorchScript: torch.jit.save
                                              pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        self.client.set_terminated(run, "FINISHED", end_ms)
        self.client.set_tag(run, MODEL_TAG, logged.model_uri)

    @_while_up()
    def log_mentor(self, label: RunLabel, result: MentorResult, full: bool = True) -> str:
        """A mentor's run (`full`: with its figures and model)."""
        return self._log_model_run(label, result, {}, [result], None, full)

    @_while_up()
    def log_student(self, label: RunLabel, record: TrialRecord, full: bool = True) -> str:
        """A student trial's run, beside its mentor's figures (`full`: with its figures and model)."""
        s, m = record.student, record.mentor
        extra = {"relative_accuracy": s.relative_accuracy, "agreement": s.agreement,
                 "mentor_test_accuracy": m.test_accuracy, "train_pool": s.train_pool, "train_ood": s.train_ood,
                 "pool_unreadable": s.pool_unreadable, "accuracy_gap": s.test_accuracy - m.test_accuracy,
                 "accuracy_gap_low": s.accuracy_gap_low, "accuracy_gap_high": s.accuracy_gap_high}
        return self._log_model_run(label, s, extra, [m, s], s.galleries, full)

    @_while_up()
    def register(self, name: str, key: str, tags: dict[str, str]) -> int | None:
        """Register `key`'s model as a version of `name` (once per run), tagged; its version number."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        run = self._open(key)
        source = self.client.get_run(run).data.tags.get(MODEL_TAG)
        if source is None:
            return None
        try:
            self.client.create_registered_model(name, description=f"the best trial of each sweep for {name}")
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.run_id == run:
                return int(version.version)
        with _use_tracking_uri(self.uri):  # MLflow's SQL registry reads the logged model from the global store
            version = self.client.create_model_version(name, source, run, tags=tags,
                                                       model_id=source.removeprefix("models:/"))
        return int(version.version)

    @_while_up()
    def finish(self, params: dict[str, Any], counts: Counts, files: list[str], description: str,
               relative: dict[str, list[float]]) -> None:
        """Attach the sweep's params, description, per-student summary metrics (best and mean ± sd relative
        accuracy), this invocation's counts (as tags: a resumed sweep overwrites them) and the result files
        to the parent run, and close it."""
        from mlflow.entities import Metric, RunTag

        tags = [RunTag(f"deepmimic.{k}", str(v)) for k, v in dataclasses.asdict(counts).items()]
        tags.append(RunTag(NOTE_TAG, description))
        now = _ms()
        metrics = []
        for student, values in relative.items():
            summary = {"best": max(values), "mean": statistics.fmean(values),
                       "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
            metrics += [Metric(f"{student}.relative_accuracy.{k}", v, now, 0) for k, v in summary.items()]
        have = self.client.get_run(self.parent).data  # a resumed sweep: each value once
        self.client.log_batch(self.parent, metrics=[m for m in metrics if have.metrics.get(m.key) != m.value],
                              tags=tags, params=_params({k: v for k, v in params.items() if k not in have.params}))
        for f in files:
            self.client.log_artifact(self.parent, f)
        self.client.set_terminated(self.parent, "FINISHED")

    @_while_up()
    def interrupted(self) -> None:
        """The sweep was stopped: its runs still open are marked killed (a rerun continues them)."""
        for run in self.runs.values():
            if self.client.get_run(run).info.status == "RUNNING":
                self.client.set_terminated(run, "KILLED")
        self.client.set_terminated(self.parent, "KILLED")
