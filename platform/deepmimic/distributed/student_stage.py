"""The student stage: a student's set (its variant of the pool beside its mentor's answers, built once) and
its training, compared with its mentor."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from ..config import ExperimentConfig
from ..core import artifacts, checkpoints, galleries, tables
from ..core.answers import Answerer
from ..core.datasets import load_dataset
from ..core.evaluation import agreement, paired_bootstrap, predict_logits
from ..core.images import ImageSet
from ..core.results import StudentResult
from ..mentors import Mentor
from ..schema import ModelConfig
from .data import TableInfo
from .keys import mentor_key, pool_key, set_key, with_mentor
from .mentor_folder import MentorFolder
from .mentor_stage import MentorOutcome, train_mentor
from .pool import Pool, ingest, label, pool_made
from .progress import Progress
from .runs import run_spec
from .student_sets import StudentSet, build_student_set
from .train import Trained, fit


def student_set(cfg: ExperimentConfig, mentor: MentorOutcome, on_ray: bool | None = None) -> StudentSet:
    """The student pool variant `cfg` asks for, labelled by `mentor`; built once, kept beside the mentor (by Ray
    Data where `on_ray`; None: where it is large)."""
    if mentor.pool_separate:
        pool, unreadable = separate_pool(cfg, mentor)
        soft = [pool_soft_labels(cfg, mentor, pool)] + ([mentor.files.soft_labels] if mentor.ood else [])
        labels: Any = [artifacts.read_manifest(uri)["sha256"] for uri in soft]
        pool_labels = None
    else:
        pool, unreadable, soft, pool_labels = mentor.pool, 0, [mentor.files.soft_labels], mentor.files.pool_labels
        labels = artifacts.read_manifest(mentor.files.soft_labels)["sha256"]
    # New soft labels, new sets (their manifest was checked with the mentor).
    return build_student_set(pool, mentor.ood, pool_labels, soft, cfg.variant, cfg.seed,
                             mentor.files.student_set(set_key(cfg, labels)), cfg.method, on_ray, unreadable,
                             answered_only=mentor.result.budget is not None, rebuilt=mentor.files.record_rebuild)


def prepare_pool(cfg: ExperimentConfig, root: str) -> Pool:
    """A separate pool's Parquet shards under `root/pools/` (made once for every mentor reading the same
    files), decoded before any training starts so that a broken file stops the run first."""
    folder = f"{root}/pools/{pool_key(cfg)}"
    found = pool_made(folder)
    if found:
        return found
    shape = load_dataset(cfg.source()).train.shape  # the labelled images': the pool's are made the same
    return ingest(cfg.source(), shape, folder, on_ray=True if cfg.data.batch_inference else None)


def separate_pool(cfg: ExperimentConfig, mentor: MentorOutcome) -> tuple[TableInfo, int]:
    """The separate pool's table, named with the mentor's classes, and its count of skipped unreadable files."""
    made = prepare_pool(cfg, mentor.files.cache)
    return dataclasses.replace(made.table, class_names=mentor.test.class_names), made.unreadable


def pool_soft_labels(cfg: ExperimentConfig, mentor: MentorOutcome, pool: TableInfo) -> str:
    """The mentor's probabilities for every image of a separate pool (`pool_soft_labels/` beside it), made
    once, as its kind says (Ray Data batch inference; an ensemble's: by each member, then combined)."""
    uri = mentor.files.pool_soft_labels
    if artifacts.intact(uri):
        return uri
    with artifacts.exclusive(f"{uri}.lock", "a pool's soft labels"):
        if not artifacts.intact(uri):
            cfg.mentor.label_pool(_PoolJob(cfg, mentor, pool, mentor_key(cfg), uri))
    return uri


@dataclass(frozen=True)
class _PoolJob:
    """`mentors.PoolJob`: labelling a separate pool for one mentor."""

    cfg: ExperimentConfig
    outcome: MentorOutcome
    pool: TableInfo
    key: str
    uri: str

    def label(self, answerer: Answerer) -> None:
        actors = self.cfg.data.label_actors
        seconds = label(answerer, self.pool, self.uri, self.cfg.resources, actors, self.key)
        print(f"mentor {self.outcome.result.name}: labelled {self.pool.rows} pool images in {seconds:.1f} s "
              f"({actors} Ray Data actor(s))", flush=True)

    def answers(self, key: str) -> str:
        return self.outcome.files.answers(key)

    def of(self, mentor: Mentor) -> str:
        cfg = with_mentor(self.cfg, mentor)
        made = train_mentor(cfg, MentorFolder.at(self.outcome.files.cache, mentor_key(cfg)))
        return pool_soft_labels(cfg, made, self.pool)


def train_student(cfg: ExperimentConfig, student: ModelConfig, mentor: MentorOutcome, data: StudentSet,
                  folder: str, in_trial: bool = False, progress: Progress | None = None) -> StudentResult:
    """Train the student on its set's targets and compare it with its mentor (`progress`: where it tells its
    epochs as it trains, a sweep's live MLflow run)."""
    spec = run_spec(cfg, "student", student, data.table, mentor.test, mentor.num_classes, folder, in_trial,
                    progress, teacher=mentor.result.checkpoint)
    trained = fit(spec)
    test = tables.to_image_set(tables.read(mentor.test.uri), mentor.test.shape, mentor.test.class_names)
    result = StudentResult.of(trained.summary, name=student.name, architecture=student.architecture,
                              checkpoint=trained.uri, method=cfg.method.name, method_knobs=cfg.method.knobs(),
                              relative_accuracy=trained.summary.test_accuracy / mentor.result.test_accuracy,
                              train_pool=data.pool, train_ood=data.ood, pool_unreadable=data.unreadable,
                              **fidelity(trained, mentor, test.labels),
                              galleries=_galleries(trained, mentor, test, student.name, folder))
    return result


def _galleries(trained: Trained, mentor: MentorOutcome, test: ImageSet, name: str, folder: str) -> str:
    """What Figs. 6-7 show for this student, kept beside its other files (`galleries.npz`: a few test images
    both models get right, the mentor alone, the student alone); drawn where someone looks
    (`plots.gallery_figure`), not in every trial."""
    kept = galleries.gather(test.images, test.labels, np.asarray(mentor.test_predictions), trained.test_predictions,
                            test.class_names, f"{name} and {mentor.result.name}")
    buffer = io.BytesIO()
    np.savez(buffer, **kept)
    path = f"{folder}/galleries.npz"
    artifacts.write_bytes(buffer.getvalue(), path)
    return path


def fidelity(trained: Trained, mentor: MentorOutcome, labels: np.ndarray) -> dict[str, float | None]:
    """How closely a student follows its mentor (StudentResult's fields of that name) on the test set's
    `labels`: agreement on the test set and on the out-of-domain candidates, its accuracy on the test samples
    the mentor gets wrong, and a paired bootstrap interval of its accuracy minus the mentor's."""
    mentor_preds, preds = np.asarray(mentor.test_predictions), trained.test_predictions
    wrong = mentor_preds != labels
    ood_agreement = None
    if mentor.ood is not None:
        images = tables.read(mentor.ood.uri, ["id", "image"]).sort_by("id")
        soft = tables.read(mentor.files.soft_labels).sort_by("id")
        soft = soft.filter(pc.is_in(soft.column("id"), images.column("id")))
        model = checkpoints.load_model_at(trained.uri)
        x = torch.from_numpy(tables.decode_images(images.column("image"), mentor.ood.shape))
        student_ood = predict_logits(model, x).argmax(1).numpy()
        ood_agreement = agreement(student_ood, tables.decode_soft_labels(soft.column("soft_label")).argmax(1))
    low, high = paired_bootstrap(mentor_preds == labels, preds == labels)
    return {"agreement": agreement(preds, mentor_preds),
            "accuracy_where_mentor_wrong": float(np.mean(preds[wrong] == labels[wrong])) if wrong.any() else None,
            "ood_agreement": ood_agreement, "accuracy_gap_low": low, "accuracy_gap_high": high}
