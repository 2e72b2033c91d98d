"""The supervised ceiling: the mentor's network and recipe trained on every true label of the training set (the
labelled images and the pool's), a reference for what labels alone would give were all of them paid for.

Its students learn from a mentor that saw the pool's labels: a reference as the `supervised` method is, never a
DeepMimic result (the report says so); every other mentor's students see no true label.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from ..core import tables
from .base import Made, MentorJob
from .trained import TrainedMentor


class CeilingMentor(TrainedMentor):
    """A network trained on all true labels: `ceiling: true` beside the mentor's architecture and recipe."""

    marker = "ceiling"
    member = False
    sees_pool_labels = True
    no_separate_pool = "the supervised ceiling needs the pool's true labels: a separate pool has none"
    ceiling: Literal[True]

    def params(self) -> dict[str, Any]:
        return {"ceiling": True}

    def make(self, job: MentorJob) -> Made:
        return self.answered(job, job.train(self, _every_label(job), target="label"))


def _every_label(job: MentorJob) -> Any:
    """The labelled table and the pool's images with their true labels, one (id, image, label) table in the
    mentor's folder."""
    from ..distributed.data import write_rows  # the stage's tables; no Ray imported with them

    labelled, pool = job.written.mentor, job.written.pool
    assert pool is not None  # the config refuses a separate pool (`no_separate_pool`)
    labels = tables.read(job.files.pool_labels).sort_by("id")
    images = tables.read(pool.uri, ["id", "image"]).sort_by("id")
    if not labels.column("id").equals(images.column("id")):
        raise RuntimeError(f"{job.files.pool_labels}: labels for {labels.num_rows} of the pool's {images.num_rows}")
    rows = pa.concat_tables([tables.read(labelled.uri, ["id", "image", "label"]),
                             images.append_column("label", labels.column("label"))])
    return write_rows(rows, f"{job.files.path}/every_label.parquet", labelled, job.key)
