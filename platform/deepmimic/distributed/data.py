"""The experiment's tables in Parquet, and Ray Datasets over them.

The student table carries ids and images only: there is no label column for a
student to read, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..core import tables
from ..core.architectures import channel_stats
from ..core.images import Dataset
from ..core.splits import Split
from .mentor_folder import MentorFolder


@dataclass(frozen=True)
class TableInfo:
    """What a training worker needs to know about a table before reading it."""

    uri: str
    rows: int
    shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: list[float]
    std: list[float]


def write_image_table(uri: str, images: np.ndarray, ids: np.ndarray, names: tuple[str, ...],
                      labels: np.ndarray | None = None, producer: str = "") -> TableInfo:
    """Write images (and labels only where given) with their channel statistics."""
    mean, std = channel_stats(images)
    tables.write_table(tables.image_table(images, ids, labels), uri, producer)
    return TableInfo(uri, len(images), tuple(images.shape[1:]), names, mean, std)  # type: ignore[arg-type]


def write_rows(rows: pa.Table, uri: str, like: TableInfo, producer: str) -> TableInfo:
    """`rows` (id, image and a target column) written as a table of `like`'s image shape and classes, with the
    channel statistics of its own images."""
    tables.write_table(rows, uri, producer)
    mean, std = channel_stats(tables.decode_images(rows.column("image"), like.shape))
    return TableInfo(uri, rows.num_rows, like.shape, like.class_names, mean, std)


@dataclass(frozen=True)
class SplitTables:
    mentor: TableInfo          # id, image, label
    pool: TableInfo | None     # id, image: no label column; None where the pool is separate
    test: TableInfo            # id, image, label


def write_split(dataset: Dataset, split: Split, folder: MentorFolder, producer: str = "",
                pool: bool = True) -> SplitTables:
    """Write the mentor part, the label-free student pool (unless `pool` is False) and the test set."""
    train, names, test = dataset.train, dataset.train.class_names, dataset.test
    m, s = train.subset(split.mentor), train.subset(split.student)
    return SplitTables(
        mentor=write_image_table(folder.mentor_table, m.images, m.ids, names, m.labels, producer),
        pool=write_image_table(folder.pool_table, s.images, s.ids, names, producer=producer) if pool else None,
        test=write_image_table(folder.test_table, test.images, test.ids, names, test.labels, producer),
    )


def read_shard(info: TableInfo, target: str | None, rank: int, world: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rank `rank`'s equal share of a table: images and its target column (`label` or `soft_label`; None: images
    alone).

    Workers read their rows straight from Parquet on shared storage and keep
    them in memory, in id order whatever order a writer left the files in.
    (Streaming the shards through Ray Data deadlocked when several trials shared
    a 2-CPU node: see the README's notes.) Every rank gets the same number of
    rows, so DDP ranks take the same number of steps.
    """
    table = tables.read(info.uri, ["id", "image", *([target] if target else [])]).sort_by("id")
    per_rank = table.num_rows // world
    if per_rank == 0:
        raise RuntimeError(f"{info.uri}: {table.num_rows} rows cannot feed {world} workers")
    rows = np.arange(rank, per_rank * world, world)
    table = table.take(pa.array(rows))
    return arrays(table, target, info.shape)


def arrays(table: pa.Table, target: str | None, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """A table's images and its target column (`label`: int64; `soft_label`: float32 rows) as NumPy arrays."""
    images = tables.decode_images(table.column("image"), shape)
    if target is None:
        return images, None
    if target == "label":
        return images, table.column("label").to_numpy().astype(np.int64)
    return images, tables.decode_soft_labels(table.column(target))
