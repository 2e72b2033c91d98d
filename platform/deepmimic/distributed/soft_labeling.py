"""A Ray task that has a trained mentor label the student pool once."""

from __future__ import annotations

import ray
from ray.train import Checkpoint
import torch

from ..core import tables
from ..core.soft_labels import soft_labels
from .data import TableInfo
from .train import Resources, load_model


def _label(checkpoint: Checkpoint, pool: TableInfo, folder: str, temperature: float) -> TableInfo:
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    mentor = load_model(checkpoint, device)
    table = tables.read(pool.uri)
    images = torch.from_numpy(tables.decode_images(table.column("image"), pool.shape)).to(device)
    probs = soft_labels(mentor, images, temperature)
    labels = tables.soft_label_table(table.column("id").to_numpy(), probs)
    tables.write_atomic(labels, f"{folder}/soft_labels.parquet")
    # The student's training table: its pool's images beside their soft labels, still no true label.
    train = table.append_column("soft_label", labels.column("soft_label"))
    meta = table.schema.metadata
    uri = f"{folder}/student_train.parquet"
    tables.write_atomic(train.replace_schema_metadata(meta), uri)
    return TableInfo(uri, pool.rows, pool.shape, pool.class_names, pool.mean, pool.std)


def label_pool(checkpoint: Checkpoint, pool: TableInfo, folder: str, resources: Resources,
               temperature: float = 1.0) -> TableInfo:
    """Write `soft_labels.parquet` (id, soft_label) and the student's training table; return the latter."""
    task = ray.remote(_label).options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker)
    return ray.get(task.remote(checkpoint, pool, folder, temperature))


