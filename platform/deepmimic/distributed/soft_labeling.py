"""A mentor (a trained checkpoint or a black box: an `Answerer`) answers every image of the student pool,
its out-of-domain candidates and the test set once, for every student trial that needs them: in the
mentor's Tune trial, which holds the resources, or else as a Ray task of its own."""

from __future__ import annotations

import time

import pyarrow as pa
import ray
import torch

from ..config import ResourcesConfig
from ..core import tables
from ..core.answers import Answerer
from ..core.black_box import Queries
from .data import TableInfo
from .train import as_task

Answered = tuple[dict[str, float], Queries | None]  # seconds spent on each job; a black box's queries


def device() -> torch.device:
    """This process's device: its GPU where Ray gave it one."""
    return torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")


def _label(answerer: Answerer, jobs: dict[str, list[TableInfo]], producer: str) -> Answered:
    answering = answerer.open(device())
    seconds = {}
    for uri, sources in jobs.items():
        parts, seconds[uri] = [], 0.0
        for info in sources:
            table = tables.read(info.uri, ["id", "image"])
            images = tables.decode_images(table.column("image"), info.shape)
            start = time.perf_counter()
            probs = answering.probabilities(images)
            seconds[uri] += time.perf_counter() - start
            parts.append(tables.soft_label_table(table.column("id").to_numpy(), probs))
        tables.write_table(pa.concat_tables(parts), uri, producer)
    return seconds, answering.queries


def label_images(answerer: Answerer, jobs: dict[str, list[TableInfo]], resources: ResourcesConfig,
                 in_process: bool, producer: str = "") -> Answered:
    """For each `uri: sources` of `jobs`, write the answerer's probabilities (columns id, soft_label) for every
    image of the sources to `uri`, here where `in_process` (the caller holds `resources`) or as a Ray task.
    Returns the seconds spent answering each job and, for a black box, the queries it answered."""
    if in_process:
        return _label(answerer, jobs, producer)
    return ray.get(as_task(_label, resources).remote(answerer, jobs, producer))
