"""A noisy student's generation (Xie et al. 2020): a mentor that learns from the labelled images' true classes and
from the pool with the soft labels of the mentor before it (its `teacher`), under noise, so it may end above it.

Generation k+1 is a network of its own (the teacher's architecture or a larger one); its noise is its recipe's:
`training.augment` (strong augmentation of every image), the architecture's dropout, and stochastic depth where the
network has it (torchvision's EfficientNets and ConvNeXts do, in training). `generations: N` beside a trained mentor
writes the chain for the same architecture with RandAugment (`config.py`); a chain written out may change the
network or recipe of each. The final students distil from the last generation as from any mentor: no true label
reaches them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import field_validator

from ..core import tables
from ..core.architectures import count_parameters
from ..errors import UserError
from .base import Made, Mentor, MentorJob
from .trained import TrainedMentor


class GenerationMentor(TrainedMentor):
    """A network trained on the labelled images' one-hot classes and the pool's soft labels from `teacher`."""

    marker = "teacher"
    no_separate_pool = ("a generation learns from the paper's split of one labelled set: a separate pool "
                        "(dataset.unlabeled) is not supported for it yet")
    teacher: TeacherConfig  # noqa: F821 (the registry's union, resolved there)

    @classmethod
    def inherit(cls, raw: dict[str, Any], merged: Any) -> dict[str, Any]:
        from . import kind_of  # the registry imports this module

        teacher = raw.get("teacher")
        own = merged(raw)
        return {**own, "teacher": kind_of(teacher).inherit(teacher, merged) if isinstance(teacher, dict) else teacher}

    @field_validator("teacher")
    @classmethod
    def _whole_pool(cls, teacher: Any) -> Any:
        if teacher.budgeted:
            raise ValueError("a budgeted black box answers part of the pool; a generation learns from its answers "
                             "for all of it")
        return teacher

    @property
    def generation(self) -> int:
        """1 for the first mentor taught by another, and one more each time."""
        return getattr(self.teacher, "generation", 0) + 1

    def identity(self) -> Any:
        return super().identity() | {"teacher": self.teacher.identity()}

    def needs(self) -> list[Mentor]:
        return [self.teacher]

    def models(self) -> list[tuple[str, Any]]:
        return [("", self), *((f"teacher.{where}".rstrip("."), m) for where, m in self.teacher.models())]

    def check(self, shape: tuple[int, int, int], classes: int) -> None:
        """Its network is its teacher's size or larger (Noisy Student's equal-or-larger student)."""
        own = dict(self.teacher.models()).get("")
        if own is None:  # a black box teaches: its size is unknown
            return
        with torch.device("meta"):
            mine, theirs = (count_parameters(m.spec().build(shape, classes)) for m in (self, own))
        if mine < theirs:
            raise UserError(f"mentor {self.name!r}: a generation's network is its teacher's size or larger; "
                            f"{self.architecture} has {mine:,} parameters, {own.name}'s {theirs:,}")
        self.teacher.check(shape, classes)

    def black_boxes(self) -> list[Any]:
        return self.teacher.black_boxes()

    def params(self) -> dict[str, Any]:
        return {"teacher": self.teacher.name, "generation": self.generation}

    def make(self, job: MentorJob) -> Made:
        teacher = job.needed(self.teacher)
        return self.answered(job, job.train(self, _learning_table(job, teacher.files.soft_labels)))



def _learning_table(job: MentorJob, teacher_answers: str) -> Any:
    """The labelled images with their classes as one-hot rows and the pool's images with the teacher's soft labels
    (its out-of-domain answers left out), one table of `soft_label` rows in the mentor's folder."""
    from ..distributed.data import write_rows  # the stage's tables; no Ray imported with them

    labelled, pool = job.written.mentor, job.written.pool
    assert pool is not None  # the config refuses a separate pool (`no_separate_pool`)
    classes = len(labelled.class_names)
    marked = tables.read(labelled.uri, ["id", "image", "label"])
    one_hot = np.eye(classes, dtype=np.float32)[marked.column("label").to_numpy()]
    images = tables.read(pool.uri, ["id", "image"]).sort_by("id")
    answers = tables.read(teacher_answers, ["id", "soft_label"])  # Acero joins no fixed-size lists: by sorted ids
    answers = answers.filter(pc.is_in(answers.column("id"), images.column("id"))).sort_by("id")
    if not answers.column("id").equals(images.column("id")):
        raise RuntimeError(f"{teacher_answers}: answers {answers.num_rows} of the pool's {images.num_rows} images")
    rows = pa.concat_tables([
        tables.soft_label_table(marked.column("id").to_numpy(), one_hot).append_column("image", marked.column("image")),
        answers.append_column("image", images.column("image")),
    ])
    return write_rows(rows, f"{job.files.path}/learning_table.parquet", labelled, job.key)
