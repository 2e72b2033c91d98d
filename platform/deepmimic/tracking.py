"""MLflow tracking: a parent run per sweep, nested runs per mentor and student.

All logging happens in the sweep's driver as trials finish, so workers need no
MLflow and a resumed sweep finds its runs by tag instead of duplicating them.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import tempfile
import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from . import plots
from .core.results import Counts, MentorResult, ModelResult, TrialRecord
from .errors import UserError

KEY_TAG = "deepmimic.key"
LOGGED_TAG = "deepmimic.logged"  # set last: a run without it was cut off half-way


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


def check_store(uri: str) -> None:
    """A local SQLite store that exists must be MLflow's: a corrupt or foreign file is named, untouched
    (MLflow would add its tables to a foreign database, or fail deep in SQLAlchemy on a corrupt one)."""
    if not uri.startswith("sqlite:///"):
        return
    path = uri.removeprefix("sqlite:///")  # sqlite:////abs/path or sqlite:///relative/path
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    advice = "move it aside (its runs are lost to the UI, the sweep's outputs are not) or set MLFLOW_TRACKING_URI"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            found = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path}: not a readable MLflow store ({e}): {advice}") from None
    if "experiments" not in found or "runs" not in found:
        raise UserError(f"{path}: an SQLite database, but not an MLflow store: {advice}")


class Tracker:
    """One sweep's MLflow runs."""

    def __init__(self, uri: str, experiment: str, sweep_dir: str, artifact_root: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        try:
            exp = self.client.get_experiment_by_name(experiment)
        except Exception as e:  # an unreachable server or a broken store: the user's to fix
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            raise UserError(f"MLflow tracking URI {uri}: unreachable ({why})") from None
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=artifact_root)
        self.parent = self._run(f"sweep:{os.path.abspath(sweep_dir)}", experiment, None,
                                {"deepmimic.sweep_dir": sweep_dir})

    def _find(self, key: str) -> str | None:
        found = self.client.search_runs([self.experiment_id], f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
        return found[0].info.run_id if found else None

    def _run(self, key: str, name: str, parent: str | None, tags: dict[str, str]) -> str:
        existing = self._find(key)
        if existing:
            return existing
        tags = {KEY_TAG: key, **tags, **({"mlflow.parentRunId": parent} if parent else {})}
        return self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id

    def _log_model_run(self, key: str, name: str, params: dict[str, Any], result: ModelResult,
                       extra_metrics: dict[str, float], plots_of: list[ModelResult]) -> str | None:
        existing = self._find(key)
        if existing and LOGGED_TAG in self.client.get_run(existing).data.tags:
            return None  # logged by an earlier run of this sweep
        if existing:
            self.client.delete_run(existing)  # its driver died while logging it: log it again, whole
        run = self._run(key, name, self.parent, {"deepmimic.role": name.split(":")[0]})
        now = int(time.time() * 1000)
        metrics = [Metric(f"epoch_{k}", v, now, e.epoch) for e in result.history
                   for k, v in (("test_accuracy", e.test_accuracy), ("test_loss", e.test_loss),
                                ("train_loss", e.train_loss)) if v is not None]
        finals = {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss, "params": result.params,
                  "inference_time_s": result.inference_time_s, **extra_metrics}
        # A black box has no params.
        metrics += [Metric(k, float(v), now, 0) for k, v in finals.items() if v is not None]
        self.client.log_batch(run, metrics=metrics, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as d:
            for file, draw in (("learning_curves.png", plots.learning_curves),
                               ("confusion_matrices.png", plots.confusion_matrices)):
                draw(plots_of, os.path.join(d, file))
                self.client.log_artifact(run, os.path.join(d, file), "plots")
        if result.checkpoint and os.path.isdir(result.checkpoint):
            self.client.log_artifacts(run, result.checkpoint, "model")
        self.client.set_tag(run, LOGGED_TAG, "1")
        self.client.set_terminated(run)
        return run

    def log_mentor(self, key: str, params: dict[str, Any], result: MentorResult) -> None:
        self._log_model_run(f"mentor:{key}", f"mentor:{result.name}", params, result, {}, [result])

    def log_student(self, record: TrialRecord) -> None:
        s, m = record.student, record.mentor
        params = {**record.grid, "architecture": s.architecture, "mentor_key": record.mentor_key,
                  "seed": record.seed, "split_ratio": record.split_ratio, "removal_bound": record.removal_bound,
                  "ood_ratio": record.ood_ratio}
        extra = {"relative_accuracy": s.relative_accuracy, "agreement": s.agreement,
                 "mentor_test_accuracy": m.test_accuracy, "train_pool": s.train_pool, "train_ood": s.train_ood,
                 "pool_unreadable": s.pool_unreadable}
        self._log_model_run(f"student:{record.key}", f"student:{s.name}", params, s, extra, [m, s])

    def finish(self, params: dict[str, Any], counts: Counts, files: list[str]) -> None:
        """Attach the sweep's params, this invocation's counts (as tags: a resumed
        sweep overwrites them) and the result files to the parent run, and close it."""
        self.client.log_batch(self.parent, params=[Param(k, str(v)[:500]) for k, v in params.items()],
                              tags=[RunTag(f"deepmimic.{k}", str(v)) for k, v in dataclasses.asdict(counts).items()])
        for f in files:
            self.client.log_artifact(self.parent, f)
        self.client.set_terminated(self.parent)
