"""What a run measured, as typed results: built once where they are measured,
read by attribute everywhere else (reports, plots, MLflow, the command line).

JSON files carry `schema`; `from_json` reads every schema written so far.
Schema 0 (no `schema` key): a run summary's confusion matrix was `confusion`,
a student's training sizes `train_size: {pool, ood}` and a trial's variant
`variant: {removal_bound, ood_ratio}`. Schema 1: a student's method had one knob,
`temperature` (1 for every method but hinton), where it now has `method_knobs`.
"""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .black_box import Queries

SCHEMA = 2
T = TypeVar("T", bound="Json")
R = TypeVar("R", bound="ModelResult")


class Json:
    """A dataclass written as JSON (with `schema`) and read back into its own type."""

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[T], data: dict[str, Any]) -> T:
        return _build(cls, data)


def pack_correct(predictions: np.ndarray, labels: np.ndarray) -> str:
    """Which test images a model classifies right, one bit an image (base64): what a report compares models on,
    image by image, long after their runs."""
    return base64.b64encode(np.packbits(np.asarray(predictions) == np.asarray(labels)).tobytes()).decode()


def unpack_correct(packed: str, n: int) -> np.ndarray:
    """`pack_correct`'s booleans for `n` images."""
    return np.unpackbits(np.frombuffer(base64.b64decode(packed), np.uint8), count=n).astype(bool)


@dataclass(frozen=True)
class Epoch:
    """One epoch's training loss and (rank 0's) test scores, its validation accuracy where it has a
    validation set (a searched student's), its loss's own figures (`train_stats`: a method's, such as the
    fraction of images it kept) and when it ended (ms since the epoch; none in files written before)."""

    epoch: int
    train_loss: float
    test_accuracy: float | None = None
    test_loss: float | None = None
    validation_accuracy: float | None = None
    train_stats: dict[str, float] = field(default_factory=dict)
    ended_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class RunSummary(Json):
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
    train_time_s: float | None = None         # the training loop's seconds, its evaluations included
    streamed: bool = False                    # its training set streamed through Ray Data (else on the device)
    started_ms: int | None = None             # when this invocation's training began (ms since the epoch)
    ended_ms: int | None = None
    test_correct: str | None = None           # which test images it classifies right (`pack_correct`)

    def correct(self) -> np.ndarray | None:
        """Its right (True) and wrong answers on the test set, in the test table's order, where it kept them."""
        if self.test_correct is None:
            return None
        return unpack_correct(self.test_correct, int(np.sum(self.confusion_matrix)))


@dataclass(frozen=True, kw_only=True)
class ModelResult(RunSummary):
    """A mentor's or a student's scores, and where its checkpoint lies (none for a black box)."""

    name: str
    architecture: str
    checkpoint: str | None = None
    figures: tuple[str, ...] = ()             # its run's figures, drawn where it trained (`plots.run_figures`)

    @classmethod
    def of(cls: type[R], summary: RunSummary, **fields: Any) -> R:
        """The result of a model whose training run measured `summary`, with its own `fields`."""
        return cls(**{f.name: getattr(summary, f.name) for f in dataclasses.fields(RunSummary)}, **fields)


@dataclass(frozen=True)
class BudgetUse:
    """What a mentor's query budget bought: pool images chosen by `selection` in rounds of these sizes, the first
    at random, the rest by what the `selector` network saw."""

    selection: str
    budget: int                               # images it could ask about
    asked: int                                # pool images answered (the students' pool)
    pool: int                                 # pool images it chose from
    rounds: tuple[int, ...]
    selector: str


@dataclass(frozen=True, kw_only=True)
class MentorResult(ModelResult):
    queries: Queries | None = None            # a black box's, or its ensemble members' together
    budget: BudgetUse | None = None           # a budgeted black box's spending (None: every pool image asked)
    sees_pool_labels: bool = False            # learnt from the pool's true labels: a reference (the ceiling)
    stage_times_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StudentResult(ModelResult):
    method: str = "deepmimic"
    method_knobs: dict[str, Any] = field(default_factory=dict)   # `core.methods`' fields, e.g. temperature
    relative_accuracy: float                  # student / mentor test accuracy
    agreement: float                          # same predicted class as the mentor, on the test set
    accuracy_where_mentor_wrong: float | None = None
    ood_agreement: float | None = None        # agreement on the out-of-domain candidates
    train_pool: int = 0                       # pool images it learned from
    train_ood: int = 0                        # out-of-domain images it learned from
    pool_unreadable: int = 0                  # files of a separate pool skipped as unreadable
    # student minus mentor test accuracy: a paired bootstrap 95% interval over the test images
    accuracy_gap_low: float | None = None
    accuracy_gap_high: float | None = None
    galleries: str | None = None              # Figs. 6-7 for this student: who gets which test images right

    def method_text(self) -> str:
        """Its method as tables show it: `hinton (temperature=4)`."""
        from .methods import METHODS  # a method's own words (`Method.describe`); torch only where it is asked

        known = METHODS.get(self.method)
        return known(**self.method_knobs).describe() if known else self.method


@dataclass(frozen=True)
class Sizes:
    mentor: int     # labelled images the mentor learned from
    student: int    # the student pool
    test: int
    unreadable: int = 0  # files of a separate pool skipped as unreadable


@dataclass(frozen=True)
class ExperimentResult(Json):
    """`deepmimic run`'s result.json: one mentor and its students."""

    name: str
    dataset: str
    split_ratio: float | None
    seed: int
    sizes: Sizes
    mentor: MentorResult
    students: tuple[StudentResult, ...]
    timings_s: dict[str, float]


@dataclass(frozen=True)
class TrialRecord(Json):
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


@dataclass(frozen=True)
class Counts:
    """What one invocation of a sweep ran and what it found done."""

    mentors: int = 0
    mentors_trained: int = 0
    mentors_reused: int = 0
    trials: int = 0
    trials_run: int = 0
    trials_reused: int = 0
    rebuilt: int = 0          # times a mentor's cached artifacts were found damaged (a bad byte, cut off), made again


@dataclass(frozen=True)
class SweepSummary(Json):
    """A sweep folder's `sweep.json`: what the report needs besides the trials."""

    name: str
    dataset: str
    paper: str | None
    grid_axes: tuple[str, ...]
    trial_keys: tuple[str, ...]       # grid order
    counts: Counts
    config: dict[str, Any]            # the search space as validated
    partial: bool = False             # interrupted: the report covers the trials that finished


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A mapping of an older schema in today's field names."""
    schema = data.get("schema", 0)
    if schema >= SCHEMA:
        return data
    data = dict(data)
    if "temperature" in data and "method" in data:
        temperature = data.pop("temperature")
        data["method_knobs"] = {"temperature": temperature} if data["method"] == "hinton" else {}
    if schema >= 1:
        return data
    if "confusion" in data:
        data["confusion_matrix"] = data.pop("confusion")
    if isinstance(data.get("train_size"), dict):
        sizes = data.pop("train_size")
        data["train_pool"], data["train_ood"] = sizes["pool"], sizes["ood"]
    if isinstance(data.get("variant"), dict):
        data.update(data.pop("variant"))
    return data


def _build(tp: Any, value: Any) -> Any:
    """`value` read from JSON as type `tp`: dataclasses by their fields (keys they lack are left out),
    tuples and optionals of them item by item, anything else as it is."""
    if value is None:
        return None
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(kinds[0], value) if len(kinds) == 1 else value
    if typing.get_origin(tp) is tuple:
        return tuple(_build(typing.get_args(tp)[0], v) for v in value)
    if dataclasses.is_dataclass(tp):
        hints, data = typing.get_type_hints(tp), _upgrade(value)
        return tp(**{f.name: _build(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data})
    return value
