"""Experiment files: YAML → validated, typed config objects.

Only this module reads YAML and `--set` overrides. Everything downstream takes
these frozen objects (or plain values taken from them), never raw dicts.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .core import library_models
from .core.datasets import DATASETS, root_rule
from .core.datasets.image_files import ImageFormat
from .core.datasets.source import Source
from .core.methods import METHODS, Method
from .core.training import Training
from .errors import UserError
from .mentors import MentorConfig, kind_of
from .schema import ModelConfig, Name, Strict, refuse_smoothing


def _bytes(value: Any) -> Any:
    """`2GiB`, `512 MiB`, `100MB` or a number of bytes."""
    if not isinstance(value, str):
        return value
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "kb": 10**3, "mb": 10**6,
             "gb": 10**9, "tb": 10**12, "b": 1}
    text = value.strip().lower().replace(" ", "")
    for unit, scale in units.items():
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * scale)
    raise ValueError(f"{value!r}: expected a size such as 512MiB or 2GiB")


Bytes = Annotated[int, BeforeValidator(_bytes), Field(gt=0)]  # an int, or a size such as "512MiB"


Paths = Annotated[tuple[str, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)]
OWN_DATA_FIELDS = ("train", "test", "unlabeled", "test_ratio", "image_size", "channels", "image_column",
                   "label_column", "class_names")  # `dataset:` fields only users' own data sets take


class DatasetConfig(Strict):
    """A data set: one of the registry's academic ones by name (and root), or the user's own images
    (`image_folder`: root/train/<class>/, root/test/<class>/; `parquet`: train/test files or globs),
    optionally with a separate unlabelled pool for the students (`unlabeled`)."""

    name: Literal[tuple(DATASETS)] = "digits"  # type: ignore[valid-type]
    root: str | None = None
    train: Paths = Field((), description="parquet: labelled files or globs (local, s3://, gs://)")
    test: Paths = Field((), description="parquet: test files or globs (none: test_ratio of train)")
    unlabeled: str | None = Field(None, min_length=1, description="the student pool: a folder of images at any "
                                  "depth, or Parquet files or a glob (only its image column is read)")
    test_ratio: float | None = Field(None, gt=0.0, lt=1.0, description="held out of train where no test set is given "
                                     "(default 0.2)")
    image_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    channels: Literal[1, 3] | None = None
    image_column: str = Field("image", min_length=1)
    label_column: str = Field("label", min_length=1)
    class_names: tuple[str, ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _root_fits(self) -> "DatasetConfig":
        entry, problem = DATASETS[self.name], root_rule(self.name, self.root)
        if problem:
            raise ValueError(problem)
        own = sorted(k for k in OWN_DATA_FIELDS if k in self.model_fields_set and getattr(self, k) not in (None, ()))
        if own and not entry.own_data:
            raise ValueError(f"{own[0]}: applies to your own images (image_folder, parquet), not {self.name!r}")
        parquet_only = [k for k in ("train", "test", "image_column", "label_column") if k in self.model_fields_set]
        if parquet_only and self.name != "parquet":
            raise ValueError(f"{parquet_only[0]}: applies to data set 'parquet' only")
        if self.name == "parquet" and not self.train:
            raise ValueError("data set 'parquet' needs dataset.train: Parquet files or globs of labelled images")
        return self

    def key(self) -> dict[str, Any]:
        """What identifies the data in cache keys: name and root, and any other field set away from its default
        (so the keys of configs written before those fields existed stay as they were)."""
        dump = self.model_dump()
        return {k: v for k, v in dump.items() if k in ("name", "root") or v != type(self).model_fields[k].default}

    def source(self, skip_unreadable: bool = False) -> Source:
        """The core's description of what to read."""
        return Source(self.name, Path(self.root).expanduser() if self.root else None, self.train, self.test,
                      self.unlabeled, self.test_ratio, ImageFormat(self.image_size, self.channels),
                      self.image_column, self.label_column, self.class_names, skip_unreadable)


class DataConfig(Strict):
    """How data reaches the students. A student set larger than `in_memory_limit` (default: a quarter of a
    worker's share of its node's memory) streams through Ray Data, with `data_cpus` reserved beside each
    trial for its reads; below it the set is held on the device. `stream` forces either path."""

    stream: Literal["auto", "always", "never"] = "auto"
    in_memory_limit: Bytes | None = None
    data_cpus: float = Field(0.5, gt=0.0, description="CPUs reserved for Ray Data beside each streaming run")
    read_ahead: Bytes | None = Field(
        128 * 2**20, description="object-store bytes a stream may read ahead of training (null: Ray Data's budget, "
        "a share of the node's store, whose pages a stream passes through count in the reader's RSS)")
    batch_inference: bool | None = Field(None, description="soft-label the pool with Ray Data actors (default: "
                                         "for a separate unlabelled pool)")
    label_actors: int = Field(1, ge=1, description="Ray Data actors labelling the pool, each with one worker's "
                              "resources and its own copy of the mentor (or its own black-box client)")
    skip_unreadable: bool = Field(False, description="skip and count unreadable files of a separate pool "
                                  "instead of stopping at the first")


class SplitConfig(Strict):
    mentor_ratio: float = Field(0.2, gt=0.0, lt=1.0)


class ResourcesConfig(Strict):
    """What each training run asks Ray for: `gpus_per_worker` may be fractional
    (e.g. 0.25) so several small models share one GPU. `threads_per_worker`
    sets PyTorch's threads (default: the CPUs reserved); reserving fewer CPUs
    than a node has leaves one for Ray Data's reads, which would otherwise wait."""

    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    threads_per_worker: int | None = Field(None, ge=1)
    custom_per_worker: dict[str, float] = Field({}, description="other Ray resources per worker, "
                                                                 "e.g. {accelerator_type:A100: 0.01}")
    mentor: "ResourcesConfig | None" = Field(None, description="the mentor's own values of these keys, for its "
                                             "trials (training and labelling in them): e.g. {cpus_per_worker: 2} "
                                             "where one mentor trains alone and students two at a time")

    @model_validator(mode="before")
    @classmethod
    def _mentor_inherits(cls, raw: Any) -> Any:
        """`mentor` overrides the shared keys one by one, as a mentor's `training` does."""
        if isinstance(raw, dict) and isinstance(raw.get("mentor"), dict):
            if "mentor" in raw["mentor"]:
                raise ValueError("mentor.mentor: a mentor's resources hold no mentor of their own")
            raw = {**raw, "mentor": {**{k: v for k, v in raw.items() if k != "mentor"}, **raw["mentor"]}}
        return raw

    def of(self, role: str) -> "ResourcesConfig":
        """What a `role` ("mentor" or "student") trains with."""
        return self.mentor if role == "mentor" and self.mentor is not None else self

    @property
    def threads(self) -> int:
        """PyTorch's threads in each worker."""
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))

    def per_worker(self) -> dict[str, float]:
        """The Ray resources one worker asks for."""
        return {"CPU": self.cpus_per_worker, **self.custom_per_worker,
                **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}


class FaultToleranceConfig(Strict):
    """How runs survive failures. A checkpoint is a barrier across a worker group's workers, so it is taken
    every few epochs, not every one."""

    checkpoint_every: int = Field(10, ge=0, description="epochs between checkpoints (0: only the final one)")
    worker_restarts: int = Field(2, ge=0, description="Ray Train restarts of a failed worker group "
                                 "(num_workers > 1), from its last checkpoint")
    trial_retries: int = Field(1, ge=0, description="Ray Tune retries of a failed trial; a single-worker run "
                               "goes on from its last checkpoint")


class OODConfig(Strict):
    """Where out-of-domain images come from: classes of the data set held out
    from everyone (`held_out`), or classes of another data set (`dataset`)."""

    source: Literal["held_out", "dataset"] = "held_out"
    classes: list[str] = Field(min_length=1)
    dataset: DatasetConfig | None = None

    @model_validator(mode="after")
    def _dataset_given(self) -> "OODConfig":
        if self.source == "dataset" and self.dataset is None:
            raise ValueError("ood.source 'dataset' needs ood.dataset (name and root)")
        return self


class VariantConfig(Strict):
    """The student pool's variant: Table 3's per-class removal and Table 4's out-of-domain images."""

    removal_bound: float = Field(0.0, ge=0.0, lt=1.0)
    ood_ratio: float = Field(0.0, ge=0.0, le=1.0)


def _method(raw: Any) -> Method:
    """`method: NAME` or `method: {name: NAME, knob: value, …}` as the registered method, its knobs validated."""
    if isinstance(raw, Method):
        return raw
    fields = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(fields, dict) or not isinstance(fields.get("name"), str):
        raise ValueError("expected a method's name, or a mapping of its name and knobs")
    if fields["name"] not in METHODS:
        raise ValueError(f"unknown method {fields['name']!r}: one of {', '.join(METHODS)}")
    return TypeAdapter(METHODS[fields["name"]]).validate_python({k: v for k, v in fields.items() if k != "name"})


MethodConfig = Annotated[Method, BeforeValidator(_method),
                         PlainSerializer(lambda method: {"name": method.name, **method.knobs()})]


class ExperimentConfig(Strict):
    name: Name = "experiment"
    seed: int = Field(0, ge=0)
    dataset: DatasetConfig = DatasetConfig()
    split: SplitConfig = SplitConfig()
    mentor: MentorConfig
    students: list[ModelConfig] = Field(min_length=1)
    resources: ResourcesConfig = ResourcesConfig()
    fault_tolerance: FaultToleranceConfig = FaultToleranceConfig()
    inference_repeats: int = Field(5, ge=1)
    variant: VariantConfig = VariantConfig()
    data: DataConfig = DataConfig()
    method: MethodConfig = METHODS["deepmimic"]()
    ood: OODConfig | None = None
    generations: int = Field(0, ge=0, le=10, description="noisy-student generations after a trained mentor: each "
                             "the mentor's network learning from the labelled images and the pool with the previous "
                             "generation's soft labels, under RandAugment (`mentors/generation.py`); the students "
                             "distil from the last")

    @model_validator(mode="before")
    @classmethod
    def _generations(cls, raw: Any) -> Any:
        """`generations: N` writes the mentor as a chain: N generations of its network, each taught by the one
        before it (named `NAME-g1` … `NAME-gN`), with strong augmentation where its recipe has none."""
        if not isinstance(raw, dict) or not raw.get("generations") or not isinstance(raw["generations"], int):
            return raw
        first = raw.get("mentor")
        if not isinstance(first, dict) or "architecture" not in first:
            raise ValueError("generations: needs a mentor with a network (`architecture:`) to repeat; write the "
                             "chain of `teacher:` sections out for any other")
        marker = kind_of(first).marker  # None: a plain trained mentor, the one kind a chain repeats
        if marker is not None:
            raise ValueError(f"generations: repeats a plain trained mentor, not one with `{marker}:`; write the "
                             "chain of `teacher:` sections out (each generation a trained network)")
        mentor, training = first, first.get("training") or {}
        noisy = {**training, "augment": training.get("augment") or {"policy": "randaugment"}}
        for g in range(1, raw["generations"] + 1):
            mentor = {**first, "name": f"{first['name']}-g{g}", "training": noisy, "teacher": mentor}
        return {**raw, "mentor": mentor}

    @model_validator(mode="before")
    @classmethod
    def _default_temperature(cls, raw: Any) -> Any:
        """A top-level `temperature` (the flat form, `method: hinton` beside it) is the temperature of a method
        that takes one and sets none of its own, as top-level `training` is the models' defaults."""
        if not isinstance(raw, dict) or "temperature" not in raw:
            return raw
        raw = dict(raw)
        temperature = raw.pop("temperature")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature: {temperature!r} is not a positive number")
        method = raw.get("method", "deepmimic")
        method = {"name": method} if isinstance(method, str) else method
        if isinstance(method, dict) and method.get("name") in METHODS \
                and "temperature" in METHODS[method["name"]].knob_names():
            raw["method"] = {"temperature": temperature, **method}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _inherit_training(cls, raw: Any) -> Any:
        """Top-level `training` holds defaults; a model's own `training` overrides them key by key."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        defaults = raw.pop("training", None) or {}
        if not isinstance(defaults, dict):
            raise ValueError("training must be a mapping")

        def merged(model: Any) -> Any:
            if isinstance(model, dict) and isinstance(model.get("training", {}), dict):
                return {**model, "training": {**defaults, **(model.get("training") or {})}}
            return model

        raw = with_students(raw)
        if isinstance(raw.get("mentor"), dict):
            raw["mentor"] = kind_of(raw["mentor"]).inherit(raw["mentor"], merged)
        if isinstance(raw.get("students"), list):
            raw["students"] = [merged(s) for s in raw["students"]]
        if isinstance(raw.get("search"), dict):  # the searched students' training
            raw["search"] = merged(raw["search"])
        return raw

    @field_validator("students")
    @classmethod
    def _unique_names(cls, students: list[ModelConfig]) -> list[ModelConfig]:
        names = [s.name for s in students]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"student names must be unique, repeated: {', '.join(sorted(dup))}")
        return students

    @model_validator(mode="after")
    def _architectures_fit(self) -> "ExperimentConfig":
        shape, classes = DATASETS[self.dataset.name].shape, DATASETS[self.dataset.name].num_classes
        if shape is not None:
            check_architectures(self, shape, classes)
        return self

    @model_validator(mode="after")
    def _pool_fits(self) -> "ExperimentConfig":
        if self.dataset.unlabeled is None:
            return self
        if self.mentor.no_separate_pool:
            raise ValueError(f"mentor: {self.mentor.no_separate_pool}")
        if "split" in self.model_fields_set:
            raise ValueError("split: does not apply with dataset.unlabeled (the mentor learns from every labelled "
                             "training image, the students from the pool): remove it")
        if self.variant.removal_bound > 0:
            raise ValueError("variant.removal_bound: an unlabelled pool has no classes to remove images from")
        if self.method.true_labels:
            raise ValueError(f"method {self.method.name!r} needs the pool's true labels: an unlabelled pool has none")
        return self

    @model_validator(mode="after")
    def _teacher_has_a_network(self) -> "ExperimentConfig":
        if self.method.teacher_online and self.mentor.no_network:
            raise ValueError(f"method {self.method.name!r} asks the mentor's network each training step: "
                             f"{self.mentor.no_network}")
        return self

    @model_validator(mode="after")
    def _students_take_targets_as_given(self) -> "ExperimentConfig":
        for i, student in enumerate(self.students):
            refuse_smoothing(f"students.{i}.training", student.training)
        return self

    @property
    def pool_separate(self) -> bool:
        """Whether the students learn from a separate unlabelled pool (else the paper's split of one set)."""
        return self.dataset.unlabeled is not None

    def source(self) -> Source:
        return self.dataset.source(self.data.skip_unreadable)

    @model_validator(mode="after")
    def _variant_fits(self) -> "ExperimentConfig":
        if self.variant.ood_ratio > 0 and self.ood is None:
            raise ValueError("variant.ood_ratio > 0 needs an `ood` section naming the out-of-domain images")
        if self.ood is not None and self.mentor.budgeted:
            raise ValueError("ood: a query budget asks about pool images only; out-of-domain candidates are not "
                             "supported with it yet")
        if self.method.true_labels and self.variant.ood_ratio > 0:
            raise ValueError(f"method {self.method.name!r} cannot add out-of-domain images: they have no true labels")
        return self


def with_students(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with its mentor given what its kind takes from the students (`Mentor.with_students`)."""
    mentor, students = raw.get("mentor"), raw.get("students")
    if isinstance(mentor, dict) and isinstance(students, list):
        return {**raw, "mentor": kind_of(mentor).with_students(mentor, students)}
    return raw


def check_architectures(cfg: ExperimentConfig, shape: tuple[int, int, int], classes: int) -> None:
    """Every trained model of `cfg` fits images of `shape` and `classes` classes, or a UserError naming it."""
    models = [("mentor" + (f".{where}" if where else ""), m) for where, m in cfg.mentor.models()]
    models += [(f"students.{i}", s) for i, s in enumerate(cfg.students)]
    cfg.mentor.check(shape, classes)
    for where, model in models:
        try:
            model.spec().check(shape, classes)
        except UserError as e:
            raise UserError(f"{where}.architecture: {e}") from None
        if model.weights:
            try:
                library_models.check_weights(model.architecture, model.weights)
            except UserError as e:
                raise UserError(f"{where}.weights: {e}") from None


def _int_range(value: Any) -> Any:
    """`[low, high]` (both included) or one number."""
    return (value, value) if isinstance(value, int) else value


IntRange = Annotated[tuple[int, int], BeforeValidator(_int_range)]


class StudentSpaceConfig(Strict):
    """The students a search draws (`core.student_search.architecture`): `conv_blocks` blocks of
    `convs_per_block` 3×3 convolutions (batch norm after each where drawn) and a max pooling, `fc` hidden fully
    connected layers, convolutions `width` wide, doubling after each pooling. Ranges are `[low, high]`."""

    conv_blocks: IntRange = (1, 3)
    convs_per_block: IntRange = (1, 2)
    width: list[Annotated[int, Field(ge=1)]] = Field([8, 16, 32, 64], min_length=1)
    fc: IntRange = (0, 1)
    batch_norm: list[bool] = Field([False, True], min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> "StudentSpaceConfig":
        for key, low in (("conv_blocks", 1), ("convs_per_block", 1), ("fc", 0)):
            lo, hi = getattr(self, key)
            if not low <= lo <= hi:
                raise ValueError(f"{key}: [{lo}, {hi}] is not a range of at least {low}")
        return self

    @property
    def size(self) -> int:
        """How many distinct students it holds (what a full grid over it trains)."""
        spans = [hi - lo + 1 for lo, hi in (self.conv_blocks, self.convs_per_block, self.fc)]
        return spans[0] * spans[1] * spans[2] * len(set(self.width)) * len(set(self.batch_norm))


class SearchConfig(Strict):
    """A search for the smallest (or fastest) student keeping `target_relative` of its mentor's accuracy,
    judged on a validation slice of the pool, never on the test set (see `distributed/search.py`)."""

    name: Name = Field("Smallest", description="the student the search picks, trained and registered as such")
    student_space: StudentSpaceConfig = StudentSpaceConfig()
    target_relative: float = Field(0.99, gt=0.0, le=1.5)
    objective: Literal["params", "latency"] = Field("params", description="what `smallest` means: parameters, "
                                                    "or milliseconds for one image on the trial's device")
    algorithm: Literal["optuna", "random", "grid"] = Field(
        "optuna", description="Ray Tune's OptunaSearch (multi-objective TPE), random draws, or every student of "
        "the space once (`num_samples` then does not apply): what a search is measured against")
    scheduler: Literal["smaller_first", "asha", "none"] = Field(
        "smaller_first", description="early stopping at rungs of epochs: a student beaten by a no-bigger one "
        "(`distributed/pruning.py`), Ray Tune's ASHA (beaten by most others), or none")
    num_samples: int = Field(32, ge=1, le=10_000)
    grace_period: int | None = Field(None, ge=1, description="epochs before a scheduler may stop a student "
                                     "(default: a ninth of the epochs)")
    reduction_factor: float = Field(3.0, gt=1.0)
    validation_ratio: float = Field(0.1, gt=0.0, lt=0.5, description="the pool's slice no searched student "
                                    "trains on, scored every epoch")
    selection: Literal["auto", "labels", "agreement"] = Field(
        "auto", description="what a student is scored on in the slice: its accuracy over the mentor's (labels: "
        "the paper's split, whose pool has them) or agreement with the mentor (label-free); auto: labels if any")
    training: Training = Training()

    def grace(self) -> int:
        return self.grace_period or max(1, self.training.epochs // 9)


class TrackingConfig(Strict):
    """What a sweep's MLflow runs carry beyond their params, metrics and checkpoint (every run has those)."""

    models: Literal["best", "all", "none"] = Field(
        "best", description="which runs carry their figures and an MLflow model: every mentor and each "
        "student's registered best trial (best), every run (all), or none (nothing is registered)")

    def full(self, role: str, best: bool = False) -> bool:
        """Whether a `role`'s run (a mentor, or a student trial: `best` of its student) carries them."""
        return self.models == "all" or (self.models == "best" and (role == "mentor" or best))


class SweepConfig(ExperimentConfig):
    """An experiment plus grid axes. Each axis is a dotted config path (as for
    `--set`) with a list of values; `student` selects students by name. `search` adds a student found by
    a search (`SearchConfig`); with it, `students` may be empty."""

    grid: dict[str, list[Any]] = {}
    search: SearchConfig | None = None
    students: list[ModelConfig] = []
    trial_cpus: float = Field(0.25, gt=0.0, description="CPUs a Tune trial's own process holds beside a worker "
                              "group (num_workers > 1); a single-worker run trains in that process, which holds "
                              "the worker's resources")
    paper: Literal["table1", "table2", "fig1", "table3", "table4", "table5", "table6"] | None = None
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _axes_given(self) -> "SweepConfig":
        for axis, values in self.grid.items():
            if not values:
                raise UserError(f"grid.{axis}: empty list of values")
            names = [n for v in values for n in (v if isinstance(v, list) else [v])]
            if axis == "student" and not all(isinstance(n, str) for n in names):
                raise UserError("grid.student: each value a student's name, or a list of names")
            seen = [json.dumps(v, sort_keys=True) for v in values]
            repeated = sorted({v for v in seen if seen.count(v) > 1})
            if repeated:
                raise UserError(f"grid.{axis}: repeated value {repeated[0]} (each value runs once)")
        return self

    @model_validator(mode="after")
    def _search_fits(self) -> "SweepConfig":
        if self.search is None:
            if not self.students:
                raise ValueError("students: at least one, or a `search:` section that finds one")
            return self
        if self.grid:
            raise ValueError("search: runs against one mentor and pool: remove grid: (or run a search space per "
                             "grid point)")
        if self.resources.num_workers != 1:
            raise ValueError("search: each student reports every epoch from its trial's own process: "
                             "resources.num_workers must be 1")
        if self.search.name in {s.name for s in self.students}:
            raise ValueError(f"search.name: {self.search.name!r} is also a student's name")
        if self.search.selection == "labels" and self.pool_separate:
            raise ValueError("search.selection: labels needs a labelled pool; dataset.unlabeled has none "
                             "(use agreement)")
        if self.search.scheduler != "none" and self.search.grace() >= self.search.training.epochs:
            raise ValueError(f"search.grace_period: {self.search.grace()} epochs leaves nothing to stop early "
                             f"before the last ({self.search.training.epochs})")
        refuse_smoothing("search.training", self.search.training)
        return self


SWEEP_ONLY = tuple(SweepConfig.model_fields.keys() - ExperimentConfig.model_fields.keys())


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (value parsed as YAML; list items by index). A key that itself holds dots,
    as a grid's axes do (`grid.mentor.black_box.budget=[50, 100]`), is matched whole, the longest first."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. mentor.training.epochs=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: value is not valid YAML") from None
        node: Any = raw
        parts = key.strip().split(".")
        i = 0
        while i < len(parts):
            part: Any = parts[i]
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} has no item {part!r} (0..{len(node) - 1})")
                part, i = int(part), i + 1
            elif isinstance(node, dict):
                end = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), i + 1)
                part, i = ".".join(parts[i:end]), end
            else:
                raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} is not a mapping")
            if i == len(parts):
                node[part] = value
            else:
                if isinstance(node, dict) and part not in node:
                    node[part] = {}
                node = node[part]
    return raw


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    # A mentor's kind ("<trained>", "<black box>", "<ensemble>") is pydantic's tag, not a key the user wrote.
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("<")) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):  # models; validated dataclasses
        msg = "unknown key"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{loc}: {msg}{more}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from `path`, or a UserError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: malformed YAML{where}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a YAML mapping at the top level")
    return raw


def parse_experiment(raw: dict[str, Any], source: str = "config",
                     kind: type[ExperimentConfig] = ExperimentConfig) -> Any:
    """Validate a raw mapping into `kind`, or raise a one-line UserError."""
    try:
        return kind.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{source}: {_describe(e)}") from None
    except UserError as e:  # an architecture that does not fit its data set
        raise UserError(f"{source}: {e}") from None


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment file; a search space's own keys are refused, not ignored."""
    raw = apply_overrides(read_yaml(path), list(overrides))
    given = sorted(k for k in SWEEP_ONLY if raw.get(k))
    if given:
        raise UserError(f"{path}: {', '.join(given)}: search-space keys, but `deepmimic run` runs one experiment "
                        "(use `deepmimic sweep`)")
    for key in SWEEP_ONLY:  # each empty or null here
        raw.pop(key, None)
    return parse_experiment(raw, str(path))


def load_sweep(path: str | Path,
               overrides: Sequence[str] = ()) -> tuple[SweepConfig, list[tuple[dict[str, Any], SweepConfig]]]:
    """Read a search space; return it and its grid expanded into (axis values, validated config) per point.

    A `student: [names]` axis keeps only the named students at each point.
    """
    raw = apply_overrides(read_yaml(path), list(overrides))
    base = parse_experiment(raw, str(path), SweepConfig)
    axes = list(base.grid.items())
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        point = copy.deepcopy(raw)
        point.pop("grid", None)
        chosen = None
        for (axis, _), value in zip(axes, combo):
            if axis == "student":
                chosen = value if isinstance(value, list) else [value]
            else:
                apply_overrides(point, [f"{axis}={json.dumps(value)}"])
        point = with_students(point)  # before a student axis leaves some out
        if chosen is not None:
            known = {s.get("name") for s in point.get("students", [])}
            missing = [c for c in chosen if c not in known]
            if missing:
                raise UserError(f"{path}: grid.student: no student named {missing[0]!r}")
            point["students"] = [s for s in point["students"] if s.get("name") in chosen]
        values = dict(zip([a for a, _ in axes], combo))
        points.append((values, parse_experiment(point, f"{path} (grid point {values})", SweepConfig)))
    return base, points
