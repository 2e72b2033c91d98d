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
from typing import Any, Iterator

import numpy as np
import ray
import torch
from ray.data.context import DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..core.row_groups import read_parts, row_groups
from .cluster import no_progress_bars
from .data import TableInfo, arrays
from .pacing import Paced


def data_task_options(data_cpus: float, reserved: bool) -> dict[str, Any]:
    """Ray remote arguments that keep Ray Data's tasks on the CPUs reserved for them (`reserved`): the current
    placement group's free bundle (its first is held by the caller). Else (a Ray Train worker, or a trial whose
    group has no such bundle), anywhere in the cluster."""
    group = ray.util.get_current_placement_group() if reserved else None
    if group is None or group.bundle_count < 2:
        return {"num_cpus": data_cpus, "scheduling_strategy": "DEFAULT"}
    return {"num_cpus": data_cpus, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        group, placement_group_capture_child_tasks=True)}


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
        no_progress_bars()  # in the trial's process too
        if Paced not in context.custom_execution_callback_classes:
            context.custom_execution_callback_classes.append(Paced)
        context.execution_options.resource_limits = context.execution_options.resource_limits.copy(
            cpu=self.data_cpus, object_store_memory=self.read_ahead or math.inf)  # inf: Ray Data's own budget
        # Under a bound, Ray Data's downstream-capacity policy holds the reads to twice what the iterator has in
        # flight (a few batches) and stalls them (benchmarks/RESULTS.md). The bound itself still holds.
        context.downstream_capacity_backpressure_ratio = (
            None if self.read_ahead else DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO)
        # One block per row group, in this epoch's order. Not read_parquet: its file-listing task takes a
        # whole CPU wherever it finds one and ignores the reserved bundle, which deadlocked a 2-CPU node.
        parts = ray.data.from_items([self.parts[i] for i in order], override_num_blocks=len(order))
        data = parts.map_batches(read_parts, fn_kwargs={"columns": ["image", self.target], "seed": order_seed},
                                 batch_size=None, batch_format="pyarrow",
                                 **data_task_options(self.data_cpus, self.reserved))
        # Whole blocks (a row group each), decoded at once and cut into batches here: Ray Data's own
        # batching of each batch, in the training thread, cost a good part of a small student's step.
        left, size = self.rows, self.batch_size * self.world
        blocks = data.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2)
        for images, targets in _batches((arrays(b, self.target, self.info.shape) for b in blocks), size):
            images, targets = images[self.rank::self.world][:left], targets[self.rank::self.world][:left]
            if len(images) == 0:
                break
            left -= len(images)
            yield (torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True),
                   torch.from_numpy(np.ascontiguousarray(targets)).to(self.device, non_blocking=True))
            if left == 0:
                break


def _batches(blocks: Iterator[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive batches of `size` rows over a stream of (images, targets) blocks; the last may be short."""
    images, targets = None, None
    for block_images, block_targets in blocks:
        if images is None or len(images) == 0:
            images, targets = block_images, block_targets
        else:
            images, targets = np.concatenate([images, block_images]), np.concatenate([targets, block_targets])
        full = len(images) // size * size
        for start in range(0, full, size):
            yield images[start:start + size], targets[start:start + size]
        images, targets = images[full:], targets[full:]
    if images is not None and len(images):
        yield images, targets
