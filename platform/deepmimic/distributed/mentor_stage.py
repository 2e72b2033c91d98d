"""The mentor stage: a mentor made once (trained, asked or combined, as its kind says: `mentors/`) with its
answers for the pool and the test set, cached by the hash of what determines it (`keys.mentor_key`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ExperimentConfig
from ..core import artifacts, tables
from ..core.answers import Answerer
from ..core.black_box import Queries
from ..core.datasets import load_dataset
from ..core.evaluation import probability_metrics
from ..core.fixmatch import FixMatch
from ..core.images import Dataset, hold_out_classes, select_classes
from ..core.results import BudgetUse, Json, MentorResult, pack_correct
from ..core.splits import Split, stratified_split
from ..errors import UserError
from ..mentors import BlackBoxConfig, Made, Mentor
from ..schema import ModelConfig
from . import query_rounds
from .data import SplitTables, TableInfo, write_image_table, write_split
from .keys import mentor_key, with_mentor
from .mentor_folder import MentorFolder
from .progress import Progress
from .runs import run_spec
from .soft_labeling import label_images
from .student_sets import OOD_ID_OFFSET
from .timing import Stopwatch
from .train import Trained, fit


@dataclass(frozen=True)
class MentorOutcome(Json):
    """Everything a student trial needs from its mentor, all on shared storage."""

    folder: str
    result: MentorResult
    test_predictions: list[int]
    pool: TableInfo | None          # the paper's pool: id, image (no label); None: a separate pool (`student_stage`)
    test: TableInfo
    ood: TableInfo | None
    num_classes: int
    made_now: bool = False          # False when it came from the cache

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MentorOutcome:
        if "student" in data:  # files written before the pool had its name
            data = {**data, "pool": data["student"]}
        return super().from_json(data)

    @property
    def files(self) -> MentorFolder:
        return MentorFolder(self.folder)

    @property
    def pool_separate(self) -> bool:
        return self.pool is None

    @property
    def soft_labelled(self) -> bool:
        """Whether this stage wrote its soft-label table: for the paper's pool, or out-of-domain images."""
        return not self.pool_separate or self.ood is not None

    def artifacts(self) -> list[str]:
        """Every table a student stage reads from this mentor's folder (a separate pool's are made and checked
        after this stage)."""
        made = [t.uri for t in (self.pool, self.test, self.ood) if t] + [self.files.test_probabilities]
        made += [self.files.soft_labels] if self.soft_labelled else []
        return made + ([] if self.pool_separate else [self.files.pool_labels])


def train_mentor(cfg: ExperimentConfig, folder: MentorFolder, dataset: Dataset | None = None,
                 split: Split | None = None, in_trial: bool = False, progress: Progress | None = None) -> MentorOutcome:
    """Make the mentor of `cfg` (its kind says how) and its answers for the pool and the test set, or load all
    of it from `folder` if made before.

    `mentor.json`, written last, marks a finished mentor stage; its tables are checked against their manifests
    before they are used again. A mentor another needs (an ensemble's member) is a mentor of its own, beside
    it, made once. `in_trial`: called in a Tune trial holding one worker's resources (see `runs.run_spec`).
    `progress`: where a mentor trained here tells its epochs as it trains (a sweep's live MLflow run).
    `dataset` and `split` may be given to bypass loading and splitting (tests do).
    """
    key = mentor_key(cfg)
    cached, _ = _cached(folder, key)
    if cached:
        return cached
    # Sweeps sharing the cache make each mentor once: a second one waits here, then finds it made.
    with artifacts.exclusive(folder.lock, f"mentor {key}"):
        cached, damaged = _cached(folder, key)
        if cached:
            return cached
        outcome = _make(cfg, folder, key, dataset, split, in_trial, progress)
        if damaged:
            folder.record_rebuild(damaged)
        return outcome


def _cached(folder: MentorFolder, key: str) -> tuple[MentorOutcome | None, str]:
    """The finished mentor stage recorded in `folder`, if every table it wrote and its checkpoint still match their
    manifests; else
    none, and the artifact of a finished stage that no longer matches ("" where the stage never finished)."""
    try:
        outcome = dataclasses.replace(MentorOutcome.from_json(artifacts.read_json(folder.done)), made_now=False)
    except artifacts.TornArtifact:  # never finished, or cut off
        return None, ""
    try:
        for uri in outcome.artifacts():
            artifacts.verify(uri, key)
        uri = outcome.result.checkpoint or ""
        if uri:  # its weights (a separate pool is labelled with them, a registry serves them): its run made them
            artifacts.verify(uri)
    except artifacts.TornArtifact as e:
        # Redo the stage: its run finds its final checkpoint where intact, so the mentor is not trained again.
        print(f"mentor {key}: rebuilding its data and soft labels ({e})", flush=True)
        return None, uri
    return outcome, ""


def _make(cfg: ExperimentConfig, folder: MentorFolder, key: str, dataset: Dataset | None, split: Split | None,
          in_trial: bool, progress: Progress | None) -> MentorOutcome:
    watch = Stopwatch()
    with watch("load_and_split"):
        written, ood, num_classes = _write_tables(cfg, folder, key, dataset, split)
    job = _Job(cfg, folder, key, written, ood, num_classes, in_trial, progress, (dataset, split), watch)
    made = cfg.mentor.make(job)
    result = dataclasses.replace(made.result, stage_times_s=watch.times)
    outcome = MentorOutcome(folder.path, result, made.test_predictions.tolist(), written.pool, written.test, ood,
                            num_classes, made_now=True)
    artifacts.write_json(outcome, folder.done)
    return outcome


def _write_tables(cfg: ExperimentConfig, folder: MentorFolder, key: str, dataset: Dataset | None,
                  split: Split | None) -> tuple[SplitTables, TableInfo | None, int]:
    """The mentor's labelled table, the paper's pool (and its true labels, the experimenter's), the test set
    and the out-of-domain candidates; the number of classes."""
    ood_images = None
    if dataset is None:
        dataset, ood_images = _load(cfg)
    if cfg.pool_separate:  # every labelled training image is the mentor's; the pool comes later, by Ray Data
        split = Split(np.arange(len(dataset.train)), np.zeros(0, np.int64))
    split = split or stratified_split(dataset.train.labels, cfg.split.mentor_ratio, cfg.seed)
    written = write_split(dataset, split, folder, key, pool=not cfg.pool_separate)
    if not cfg.pool_separate:
        tables.write_table(tables.label_table(dataset.train.ids[split.student], dataset.train.labels[split.student]),
                           folder.pool_labels, key)
    ood = None if ood_images is None else write_image_table(
        folder.ood_table, ood_images.images, OOD_ID_OFFSET + np.arange(len(ood_images)), dataset.train.class_names,
        producer=key)
    return written, ood, dataset.train.num_classes


def _load(cfg: ExperimentConfig) -> tuple[Dataset, Any]:
    """The data set, and the out-of-domain candidates where the config names some."""
    dataset, ood = load_dataset(cfg.source()), cfg.ood
    if ood is None:
        return dataset, None
    try:
        if ood.source == "held_out":
            return hold_out_classes(dataset, ood.classes)
        other = load_dataset(ood.dataset.source())  # the whole source: a user's own images have globs and sizes
        images = select_classes(other.train, ood.classes)
    except ValueError as e:
        raise UserError(f"ood.classes: {e}") from None
    if images.shape != dataset.train.shape:
        raise UserError(f"ood.dataset: images are {images.shape}, but {dataset.name}'s are {dataset.train.shape}")
    return dataset, images


@dataclass(frozen=True)
class _Job:
    """`mentors.MentorJob`: the means a kind makes its mentor with, on this stage's tables."""

    cfg: ExperimentConfig
    files: MentorFolder
    key: str
    written: SplitTables
    ood: TableInfo | None
    num_classes: int
    in_trial: bool
    progress: Progress | None
    preloaded: tuple[Dataset | None, Split | None]
    watch: Stopwatch

    @property
    def soft_labels(self) -> str:
        return self.files.soft_labels

    @property
    def test_probabilities(self) -> str:
        return self.files.test_probabilities

    def train(self, model: ModelConfig, table: TableInfo | None = None, fixmatch: FixMatch | None = None,
              target: str = "soft_label", tracked: bool = True) -> Trained:
        """`MentorJob.train`; `tracked` False: a helper network (a budget's selector), not told to the tracker."""
        semi = (self.written.pool, fixmatch) if fixmatch is not None and self.written.pool is not None else None
        spec = run_spec(self.cfg, "mentor", model, table or self.written.mentor, self.written.test,
                        self.num_classes, self.files.path, self.in_trial, self.progress if tracked else None,
                        target="label" if table is None else target, semi=semi)
        with self.watch("train_mentor"):
            return fit(spec)

    def answer(self, answerer: Answerer) -> tuple[dict[str, float], Queries | None]:
        pool = [t for t in (self.written.pool, self.ood) if t]
        jobs = {uri: sources for uri, sources in ((self.soft_labels, pool), (self.test_probabilities,
                                                                               [self.written.test])) if sources}
        resources = self.cfg.resources.of("mentor")
        with self.watch("soft_labels"):
            return label_images(answerer, jobs, resources, self.in_trial and resources.num_workers == 1, self.key)

    def within_budget(self, answerer: Answerer, box: BlackBoxConfig) -> tuple[dict[str, float], Queries,
                                                                              BudgetUse]:
        return query_rounds.spend(self, answerer, box)

    def answers(self, key: str) -> str:
        return self.files.answers(key)

    def needed(self, mentor: Mentor) -> MentorOutcome:
        cfg = with_mentor(self.cfg, mentor)
        with self.watch("needed mentors"):
            return train_mentor(cfg, self.files.sibling(mentor_key(cfg)), *self.preloaded, self.in_trial)

    def scored(self, name: str, description: str, seconds: float, queries: Queries | None,
               budget: BudgetUse | None = None) -> Made:
        answers = tables.read(self.test_probabilities).sort_by("id")
        probs = tables.decode_soft_labels(answers.column("soft_label"))
        test = tables.read(self.written.test.uri, ["id", "label"])
        labels = test.sort_by("id").column("label").to_numpy()
        # predictions for sorted ids, reordered to the rows of the test table (how test predictions are kept)
        preds = probs.argmax(1)[np.searchsorted(answers.column("id").to_numpy(), test.column("id").to_numpy())]
        result = MentorResult(name=name, architecture=description, params=None, inference_time_s=seconds,
                              queries=queries, budget=budget,
                              test_correct=pack_correct(preds, test.column("label").to_numpy()),
                              **probability_metrics(probs, labels, self.num_classes))
        return Made(result, preds)
