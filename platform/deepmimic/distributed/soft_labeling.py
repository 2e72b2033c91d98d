"""A Ray task that has a trained mentor label the student pool (and any
out-of-domain candidates) once, for every student trial that needs them."""

from __future__ import annotations

import pyarrow as pa
import ray
import torch
from ray.train import Checkpoint

from ..core import tables
from ..core.soft_labels import soft_labels
from .data import TableInfo
from .train import Resources, load_model


def _label(checkpoint: Checkpoint, sources: list[TableInfo], uri: str, temperature: float, producer: str) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    mentor = load_model(checkpoint, device)
    parts = []
    for info in sources:
        table = tables.read(info.uri, ["id", "image"])
        images = torch.from_numpy(tables.decode_images(table.column("image"), info.shape)).to(device)
        parts.append(tables.soft_label_table(table.column("id").to_numpy(), soft_labels(mentor, images, temperature)))
    labels = pa.concat_tables(parts)
    tables.write_atomic(labels, uri, producer)
    return labels.num_rows


def label_images(checkpoint: Checkpoint, sources: list[TableInfo], uri: str, resources: Resources,
                 producer: str = "", temperature: float = 1.0) -> int:
    """Write the mentor's soft labels (columns id, soft_label) for every image of `sources` to `uri`."""
    # DEFAULT scheduling: inside a Tune trial, a task would otherwise be held to the trial's own small bundle.
    task = ray.remote(_label).options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker,
                                      resources=resources.custom_per_worker or None, scheduling_strategy="DEFAULT")
    return ray.get(task.remote(checkpoint, sources, uri, temperature, producer))

