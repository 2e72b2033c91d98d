"""Parquet row groups as the units a stream reads: listed, then read (and shuffled) one block each.

Only pyarrow and NumPy: Ray Data's read tasks import this module, and a first read waited for PyTorch's
import when `read_parts` lived beside the training side of streaming.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from .datasets.parquet_images import expand, open_file


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
