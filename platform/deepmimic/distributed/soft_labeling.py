"""A Ray task that has a trained mentor label the student pool (and any
out-of-domain candidates) once, for every student trial that needs them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from ray.train import Checkpoint

from ..core import tables
from ..core.soft_labels import soft_labels
from .data import TableInfo
from .train import Resources, load_model


def _label(checkpoint: Checkpoint, sources: list[TableInfo], uri: str, temperature: float) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    mentor = load_model(checkpoint, device)
    parts = []
    for info in sources:
        table = tables.read(info.uri, ["id", "image"])
        images = torch.from_numpy(tables.decode_images(table.column("image"), info.shape)).to(device)
        parts.append(tables.soft_label_table(table.column("id").to_numpy(), soft_labels(mentor, images, temperature)))
    labels = pa.concat_tables(parts)
    tables.write_atomic(labels, uri)
    return labels.num_rows


def label_images(checkpoint: Checkpoint, sources: list[TableInfo], uri: str, resources: Resources,
                 temperature: float = 1.0) -> int:
    """Write the mentor's soft labels (columns id, soft_label) for every image of `sources` to `uri`."""
    # DEFAULT scheduling: inside a Tune trial, a task would otherwise be held to the trial's own small bundle.
    task = ray.remote(_label).options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker,
                                      resources=resources.custom_per_worker or None, scheduling_strategy="DEFAULT")
    return ray.get(task.remote(checkpoint, sources, uri, temperature))


def student_table(sources: list[TableInfo], keep_ids: list[np.ndarray], soft_uri: str, uri: str) -> TableInfo:
    """The student's training table: the kept images of each source beside their
    soft labels (columns id, image, soft_label; no true label). Statistics are the
    first source's (the pool's)."""
    soft = tables.read(soft_uri)
    parts = []
    for info, ids in zip(sources, keep_ids):
        table = tables.read(info.uri, ["id", "image"])
        parts.append(table.filter(pc.is_in(table.column("id"), pa.array(ids, pa.int64()))))
    images = pa.concat_tables(parts)
    # Arrow's join cannot carry a fixed-size-list column, so match ids by sorting.
    soft_ids, want = soft.column("id").to_numpy(), images.column("id").to_numpy()
    order = np.argsort(soft_ids)
    at = order[np.clip(np.searchsorted(soft_ids[order], want), 0, len(order) - 1)]
    if not np.array_equal(soft_ids[at], want):
        raise RuntimeError(f"{soft_uri}: soft labels missing for {(soft_ids[at] != want).sum()} images")
    joined = images.append_column("soft_label", soft.column("soft_label").take(pa.array(at)))
    pool = tables.read(sources[0].uri, ["id"]).schema.metadata  # shape, class names and statistics
    tables.write_atomic(joined.select(["id", "image", "soft_label"]).replace_schema_metadata(pool), uri)
    return TableInfo(uri, joined.num_rows, sources[0].shape, sources[0].class_names, sources[0].mean, sources[0].std)
