"""A separate unlabelled pool at any size: its files decoded into Parquet shards (id, image) and
labelled by the mentor, both as Ray Data jobs.

Both run in the driver, before the mentor stage and between it and the students', when no trial holds
the cluster's CPUs: Ray Data then has every node to itself (tasks waiting for CPUs held by trials deadlocked here
once). A pool is decoded before any training (a broken file stops a run first) and kept beside the
mentors, keyed by what was read, so every mentor on the same files shares one copy; `pool.json`,
written last, marks it finished.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from ..config import ResourcesConfig
from ..core import artifacts, tables
from ..core.answers import Answerer
from ..core.architectures import channel_stats
from ..core.datasets.pool import PoolPart, decode_part, list_pool
from ..core.datasets.source import Source
from ..core.results import Json
from ..core.row_groups import read_parts, row_groups
from ..errors import UserError
from .data import TableInfo
from .soft_labeling import device
from .student_sets import IN_DRIVER_BYTES

STATS_SAMPLE = 10_000  # pool images the students' input normalisation is measured on


@dataclass(frozen=True)
class Pool(Json):
    table: TableInfo   # a folder of Parquet shards: id, image
    unreadable: int    # files or cells skipped (`data.skip_unreadable`)


def user_error(error: BaseException) -> UserError | None:
    """The UserError behind an error raised in a Ray task or Ray Data operator, if any."""
    seen: Any = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, UserError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__ or seen.__context__
    return None


def _decode(parts: list[PoolPart], src: Source, shape: tuple[int, int, int]) -> pa.Table:
    """The decoded images (id, image) of pool parts."""
    ids, images = zip(*[decode_part(part, src, shape)[:2] for part in parts])
    return tables.image_table(np.concatenate(images), np.concatenate(ids))


def _decode_rows(batch: dict[str, np.ndarray], src: Source, shape: tuple[int, int, int]) -> pa.Table:
    """Ray Data's map over pool parts, one per row."""
    return _decode([PoolPart(**fields) for fields in batch["part"]], src, shape)


def ingest(src: Source, shape: tuple[int, int, int], folder: str, on_ray: bool | None = None) -> Pool:
    """The pool's images as Parquet shards under `folder` (made once; found again by `pool.json`).
    A pool smaller than `IN_DRIVER_BYTES` (`on_ray` None) is decoded in this process."""
    found = pool_made(folder)
    if found:
        return found
    with artifacts.exclusive(f"{folder}.lock", "an unlabelled pool"):
        return pool_made(folder) or _ingest(src, shape, folder, on_ray)


def pool_made(folder: str) -> Pool | None:
    """The pool finished in `folder`, if its shards still match their manifest."""
    try:
        pool = Pool.from_json(artifacts.read_json(f"{folder}/pool.json"))
        artifacts.verify(pool.table.uri)
        return pool
    except artifacts.TornArtifact:
        return None


def _ingest(src: Source, shape: tuple[int, int, int], folder: str, on_ray: bool | None) -> Pool:
    listing = list_pool(src)
    uri = f"{folder}/{uuid.uuid4().hex}"
    if on_ray if on_ray is not None else listing.rows * int(np.prod(shape)) > IN_DRIVER_BYTES:
        # One Ray Data row per part: each call decodes a part's files (or a Parquet row group) with their ids.
        # ray.data.read_images gives no stable ids and no per-file error naming, so the parts are ours.
        parts = ray.data.from_items([{"part": dataclasses.asdict(p)} for p in listing.parts])
        data = parts.map_batches(_decode_rows, batch_size=1, fn_kwargs={"src": src, "shape": shape},
                                 batch_format="numpy")
        try:
            data.write_parquet(uri)
        except Exception as e:  # a broken file, raised in a Ray Data task: its one line, not Ray's traceback
            raise user_error(e) or e from None
    else:
        tables.write_folder(_decode(list(listing.parts), src, shape), uri)
    rows = tables.read(uri, ["id"]).num_rows
    if rows == 0:
        raise UserError(f"dataset.unlabeled {src.unlabeled}: no readable image")
    artifacts.seal(uri, rows)
    sample = tables.read_head(uri, ["image"], STATS_SAMPLE)
    mean, std = channel_stats(tables.decode_images(sample.column("image"), shape))
    # No class names: a pool has none; each mentor's are put in when its students read it.
    pool = Pool(TableInfo(uri, rows, shape, (), mean, std), listing.rows - rows + listing.skipped)
    artifacts.write_json(pool, f"{folder}/pool.json")
    return pool


class _Labeller:
    """A Ray Data actor: its own copy of the mentor (or its own rate-limited black-box client)."""

    def __init__(self, answerer: Answerer, shape: tuple[int, int, int]) -> None:
        self.shape, self.answering = shape, answerer.open(device())

    def __call__(self, batch: pa.Table) -> pa.Table:
        images = tables.decode_images(batch.column("image"), self.shape)
        return tables.soft_label_table(batch.column("id").to_numpy(), self.answering.probabilities(images))


READ_CPUS = 0.25  # each read of the pool's row groups: light, and leaving the actors every other CPU


def label(answerer: Answerer, pool: TableInfo, uri: str, resources: ResourcesConfig, actors: int,
          producer: str = "") -> float:
    """Ray Data batch inference: `actors` actors, each holding one worker's resources (its GPU share too),
    write the mentor's probabilities for every pool image as Parquet shards (id, soft_label) under `uri`,
    sealed with their manifest last. Returns the seconds it took.

    The pool is read as row groups by small tasks (`READ_CPUS`), not by `read_parquet`, whose file-listing
    task wants a whole CPU: with as many actors as CPUs it waited forever. Actors are capped to what the
    cluster holds beside one read."""
    start = time.perf_counter()
    fs, path = artifacts.filesystem(uri)
    fs.delete_dir_contents(path, missing_dir_ok=True)  # an attempt cut off: no manifest, so never used
    fits = int((ray.cluster_resources().get("CPU", 1) - READ_CPUS) // max(resources.cpus_per_worker, 1e-9))
    if actors > max(fits, 1):
        print(f"labelling with {max(fits, 1)} actor(s), not {actors}: the cluster holds no more beside the reads")
        actors = max(fits, 1)
    parts = row_groups(pool.uri)
    data = ray.data.from_items(parts, override_num_blocks=len(parts)).map_batches(
        read_parts, fn_kwargs={"columns": ["id", "image"]}, batch_size=None, batch_format="pyarrow",
        num_cpus=READ_CPUS).map_batches(
        _Labeller, fn_constructor_kwargs={"answerer": answerer, "shape": pool.shape},
        compute=ray.data.ActorPoolStrategy(size=actors), batch_size=4096, batch_format="pyarrow",
        num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker,
        resources=resources.custom_per_worker or None)
    fs.create_dir(path, recursive=True)
    rows = 0
    try:  # written here, not by a Write task: one more CPU-hungry stage that could wait behind the actors
        for i, batch in enumerate(data.iter_batches(batch_size=None, batch_format="pyarrow")):
            pq.write_table(batch, f"{path}/part-{i:05d}.parquet", filesystem=fs)
            rows += batch.num_rows
    except Exception as e:
        raise user_error(e) or e from None
    artifacts.seal(uri, rows, producer)
    return time.perf_counter() - start

