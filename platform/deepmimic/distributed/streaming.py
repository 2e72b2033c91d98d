"""A student set streamed through Ray Data, for sets too large to hold on the device.

Each epoch reads the set's Parquet row groups in an order drawn from (seed, epoch), shuffles
each row group's rows by the same seed and keeps order while streaming, so a resumed run sees the same batches.
Every DDP rank reads the same stream and keeps the rows at its own positions of each global batch,
capped at the set's rows // world: equal steps on every rank, no coordination between them.

Ray Data's read tasks run on CPUs reserved for them: a bundle of the caller's placement group
(a Tune trial's, or the one `fit` makes around a Ray task) that nothing else may take. Unreserved,
they waited forever for CPUs that trials held on a small node.
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.data.context import DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..core import tables
from ..core.datasets.parquet_images import expand, open_file
from .data import TableInfo


def data_task_options(data_cpus: float, reserved: bool) -> dict[str, Any]:
    """Ray remote arguments that keep Ray Data's tasks on the CPUs reserved for them (`reserved`): the current
    placement group's free bundle (its first is held by the caller). Else, in a Ray Train worker whose group
    has no such bundle, anywhere in the cluster."""
    group = ray.util.get_current_placement_group() if reserved else None
    if group is None:
        return {"num_cpus": data_cpus, "scheduling_strategy": "DEFAULT"}
    return {"num_cpus": data_cpus, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        group, placement_group_capture_child_tasks=True)}


def row_groups(uri: str) -> list[dict[str, Any]]:
    """Every row group of a table's Parquet files: the units a stream reads and orders."""
    return [{"file": f, "row_group": g} for f in expand([uri], uri)
            for g in range(open_file(f).metadata.num_row_groups)]


def read_parts(batch: pa.Table, columns: list[str], seed: int | None = None) -> pa.Table:
    """Ray Data's map over row groups: their rows, shuffled where a `seed` is given (in the read task, in
    parallel with training: Ray Data's local shuffle buffer, in the training process, cost more than the step)."""
    parts = zip(batch.column("file").to_pylist(), batch.column("row_group").to_pylist())
    rows = pa.concat_tables([open_file(f).read_row_group(g, columns=columns) for f, g in parts])
    if seed is None:
        return rows
    first = [zlib.crc32(batch.column("file")[0].as_py().encode()), batch.column("row_group")[0].as_py()]
    return rows.take(pa.array(np.random.default_rng([seed, *first]).permutation(rows.num_rows)))


class Streamed:
    """`core.batches.Batches` over a Parquet table read by Ray Data, rank `rank`'s share of it."""

    def __init__(self, info: TableInfo, target: str, batch_size: int, rank: int, world: int,
                 device: torch.device, data_cpus: float, reserved: bool, read_ahead: int | None = None) -> None:
        self.info, self.target, self.batch_size, self.rank, self.world = info, target, batch_size, rank, world
        self.device, self.data_cpus, self.reserved, self.read_ahead = device, data_cpus, reserved, read_ahead
        self.rows = info.rows // world
        if self.rows == 0:
            raise RuntimeError(f"{info.uri}: {info.rows} rows cannot feed {world} workers")
        self.steps = max(1, math.ceil(self.rows / batch_size))
        self.parts = row_groups(info.uri)

    def epoch(self, epoch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order_seed = (seed * 100_003 + epoch) % (2**32)
        order = np.random.default_rng(order_seed).permutation(len(self.parts))
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # not two lines an epoch in the trial's log
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the same seeds give the same batches
        context.execution_options.resource_limits = context.execution_options.resource_limits.copy(
            cpu=self.data_cpus, object_store_memory=self.read_ahead or math.inf)  # inf: Ray Data's own budget
        # Under a bound, Ray Data's downstream-capacity policy holds the reads to twice what the iterator has in
        # flight (a few batches) and stalls them: 0.36x the speed at 256 MiB. The bound itself still holds.
        context.downstream_capacity_backpressure_ratio = (
            None if self.read_ahead else DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO)
        # One block per row group, in this epoch's order. Not read_parquet: its file-listing task takes a
        # whole CPU wherever it finds one and ignores the reserved bundle, which deadlocked a 2-CPU node.
        parts = ray.data.from_items([self.parts[i] for i in order], override_num_blocks=len(order))
        data = parts.map_batches(read_parts, fn_kwargs={"columns": ["image", self.target], "seed": order_seed},
                                 batch_size=None, batch_format="pyarrow",
                                 **data_task_options(self.data_cpus, self.reserved))
        left = self.rows
        for batch in data.iter_batches(batch_size=self.batch_size * self.world, batch_format="pyarrow",
                                       prefetch_batches=4):
            own = batch if self.world == 1 and batch.num_rows <= left else batch.take(
                pa.array(np.arange(self.rank, batch.num_rows, self.world)[:left]))
            if own.num_rows == 0:
                break
            left -= own.num_rows
            yield self._tensors(own)
            if left == 0:
                break

    def _tensors(self, batch: pa.Table) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(tables.decode_images(batch.column("image"), self.info.shape))
        column = batch.column(self.target)
        targets = (torch.from_numpy(column.to_numpy().astype(np.int64)) if self.target == "label"
                   else torch.from_numpy(tables.decode_soft_labels(column)))
        return images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
