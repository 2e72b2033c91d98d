"""A mentor (a trained checkpoint or a black box) answers every image of the
student pool, its out-of-domain candidates and the test set once, for every
student trial that needs them: in the mentor's Tune trial, which holds the
resources, or else as a Ray task of its own."""

from __future__ import annotations

import time

import pyarrow as pa
import ray
import torch
from ray.train import Checkpoint

from ..config import BlackBoxConfig, ResourcesConfig
from ..core import tables
from ..core.black_box import Queries, open_black_box
from ..core.soft_labels import soft_labels
from .data import TableInfo
from .train import as_task, load_model

Answered = tuple[dict[str, float], Queries | None]  # seconds spent on each job; a black box's queries


def _label(mentor: Checkpoint | BlackBoxConfig, jobs: dict[str, list[TableInfo]], producer: str) -> Answered:
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    if isinstance(mentor, Checkpoint):
        model, box = load_model(mentor, device), None
        answer = lambda images: soft_labels(model, torch.from_numpy(images).to(device))  # noqa: E731
    else:
        box = open_black_box(**mentor.model_dump())
        answer = box.probabilities
    seconds = {}
    for uri, sources in jobs.items():
        parts, seconds[uri] = [], 0.0
        for info in sources:
            table = tables.read(info.uri, ["id", "image"])
            images = tables.decode_images(table.column("image"), info.shape)
            start = time.perf_counter()
            probs = answer(images)
            seconds[uri] += time.perf_counter() - start
            parts.append(tables.soft_label_table(table.column("id").to_numpy(), probs))
        tables.write_table(pa.concat_tables(parts), uri, producer)
    return seconds, box.queries if box else None


def label_images(mentor: Checkpoint | BlackBoxConfig, jobs: dict[str, list[TableInfo]], resources: ResourcesConfig,
                 in_process: bool, producer: str = "") -> Answered:
    """For each `uri: sources` of `jobs`, write the mentor's probabilities (columns id, soft_label) for every
    image of the sources to `uri`, here where `in_process` (the caller holds `resources`) or as a Ray task.
    Returns the seconds spent answering each job and, for a black box, the queries it answered."""
    if in_process:
        return _label(mentor, jobs, producer)
    return ray.get(as_task(_label, resources).remote(mentor, jobs, producer))
