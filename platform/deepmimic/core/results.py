"""What a run measured, as typed results: built once where they are measured,
read by attribute everywhere else (reports, plots, MLflow, the command line).

JSON files carry `schema`; `from_json` reads every schema written so far.
Schema 0 (no `schema` key): a run summary's confusion matrix was `confusion`
and a student's training sizes `train_size: {pool, ood}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .black_box import Queries

SCHEMA = 1


@dataclass(frozen=True)
class Epoch:
    """One epoch's training loss and (rank 0's) test scores."""

    epoch: int
    train_loss: float
    test_accuracy: float | None = None
    test_loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What a training run measured on the test set, saved in its final checkpoint."""

    params: int | None
    test_accuracy: float
    test_loss: float
    inference_time_s: float
    confusion_matrix: list[list[int]]
    history: tuple[Epoch, ...] = ()
    device: str | None = None
    node_id: str | None = None
    resumed_from_epoch: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        data = _upgrade(data)
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["history"] = tuple(Epoch(**e) for e in known.get("history", ()))
        if known.get("queries") is not None and "queries" in names:
            known["queries"] = Queries(**known["queries"])
        return cls(**known)


@dataclass(frozen=True, kw_only=True)
class ModelResult(RunSummary):
    """A mentor's or a student's scores, and where its checkpoint lies (none for a black box)."""

    name: str
    architecture: str
    checkpoint: str | None = None


@dataclass(frozen=True, kw_only=True)
class MentorResult(ModelResult):
    queries: Queries | None = None            # a black box's, or its ensemble members' together
    stage_times_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StudentResult(ModelResult):
    method: str = "deepmimic"
    temperature: float = 1.0
    relative_accuracy: float                  # student / mentor test accuracy
    agreement: float                          # same predicted class as the mentor, on the test set
    accuracy_where_mentor_wrong: float | None = None
    ood_agreement: float | None = None        # agreement on the out-of-domain candidates
    train_pool: int = 0                       # pool images it learned from
    train_ood: int = 0                        # out-of-domain images it learned from


@dataclass(frozen=True)
class Sizes:
    mentor: int     # labelled images the mentor learned from
    student: int    # the student pool
    test: int


@dataclass(frozen=True)
class ExperimentResult:
    """`deepmimic run`'s result.json: one mentor and its students."""

    name: str
    dataset: str
    split_ratio: float | None
    seed: int
    sizes: Sizes
    mentor: MentorResult
    students: tuple[StudentResult, ...]
    timings_s: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentResult:
        return cls(name=data["name"], dataset=data["dataset"], split_ratio=data["split_ratio"], seed=data["seed"],
                   sizes=Sizes(**data["sizes"]), mentor=MentorResult.from_json(data["mentor"]),
                   students=tuple(StudentResult.from_json(s) for s in data["students"]),
                   timings_s=data["timings_s"])


@dataclass(frozen=True)
class TrialRecord:
    """A sweep's finished student trial (`trials/KEY/trial.json`): its grid point, mentor and student."""

    key: str
    mentor_key: str
    grid: dict[str, Any]              # this trial's axis values, `student` included
    seed: int
    split_ratio: float
    removal_bound: float
    ood_ratio: float
    mentor: MentorResult
    student: StudentResult

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        variant = data.get("variant", {})  # schema 0
        return cls(key=data["key"], mentor_key=data["mentor_key"], grid=data["grid"], seed=data["seed"],
                   split_ratio=data["split_ratio"],
                   removal_bound=data.get("removal_bound", variant.get("removal_bound", 0.0)),
                   ood_ratio=data.get("ood_ratio", variant.get("ood_ratio", 0.0)),
                   mentor=MentorResult.from_json(data["mentor"]), student=StudentResult.from_json(data["student"]))


@dataclass(frozen=True)
class Counts:
    """What one invocation of a sweep ran and what it found done."""

    mentors: int = 0
    mentors_trained: int = 0
    mentors_reused: int = 0
    trials: int = 0
    trials_run: int = 0
    trials_reused: int = 0


@dataclass(frozen=True)
class SweepSummary:
    """A sweep folder's `sweep.json`: what the report needs besides the trials."""

    name: str
    dataset: str
    paper: str | None
    grid_axes: tuple[str, ...]
    trial_keys: tuple[str, ...]       # grid order
    counts: Counts
    config: dict[str, Any]            # the search space as validated

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSummary:
        names = {f.name for f in dataclasses.fields(Counts)}
        return cls(name=data["name"], dataset=data["dataset"], paper=data.get("paper"),
                   grid_axes=tuple(data["grid_axes"]), trial_keys=tuple(data["trial_keys"]),
                   counts=Counts(**{k: v for k, v in data["counts"].items() if k in names}), config=data["config"])


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-0 row in today's field names."""
    if data.get("schema", 0) >= 1:
        return data
    data = dict(data)
    if "confusion" in data:
        data["confusion_matrix"] = data.pop("confusion")
    sizes = data.pop("train_size", None)
    if sizes:
        data["train_pool"], data["train_ood"] = sizes["pool"], sizes["ood"]
    return data
