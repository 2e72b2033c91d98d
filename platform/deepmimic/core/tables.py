"""Parquet tables of images and soft labels (pyarrow only, no Ray).

An image table has `id` (int64), `image` (fixed-size binary, C·H·W bytes) and,
only where labels are allowed, `label` (int64); its shape and class names travel
beside it (`distributed.data.TableInfo`). A soft-label table has `id` and `soft_label`
(fixed-size list of float32). Paths may be local or any URI pyarrow's file
systems understand (`s3://`, `gs://`, …); `write_table` is atomic and seals
the table with its manifest (see `artifacts`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError
from . import artifacts
from .images import ImageSet


def write_table(table: pa.Table, uri: str, producer: str = "") -> None:
    """Write atomically, then the manifest: its hash, rows and `producer` (the hash of the config that made it)."""
    artifacts.write_sealed(lambda fs, tmp: pq.write_table(table, tmp, filesystem=fs), uri, producer, table.num_rows)


def write_folder(table: pa.Table, uri: str) -> None:
    """`table` as the one file of a table folder, laid out as Ray Data writes one (sealed by the caller)."""
    fs, path = artifacts.filesystem(uri)
    with artifacts.writing(uri):
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-00000.parquet", filesystem=fs)


def read(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet table (file or folder), or a UserError naming it."""
    fs, path = artifacts.filesystem(uri)
    try:
        return pq.read_table(path, filesystem=fs, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise UserError(f"{uri}: unreadable Parquet table ({e})") from None


def image_table(images: np.ndarray, ids: np.ndarray, labels: np.ndarray | None = None) -> pa.Table:
    """Images (uint8 N×C×H×W) as a table; `labels=None` leaves the label column out entirely."""
    n, row = len(images), int(np.prod(images.shape[1:]))
    data = np.ascontiguousarray(images, dtype=np.uint8)
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(row), n, [None, pa.py_buffer(data.tobytes())])
    cols = {"id": pa.array(ids, pa.int64()), "image": column}
    if labels is not None:
        cols["label"] = pa.array(labels, pa.int64())
    return pa.table(cols)


def decode_images(column: pa.ChunkedArray | pa.Array, shape: tuple[int, int, int]) -> np.ndarray:
    """A fixed-size binary column back to uint8 N×C×H×W, without a per-row loop."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    row = int(np.prod(shape))
    buf = column.buffers()[1]
    flat = np.frombuffer(buf, dtype=np.uint8, count=len(column) * row, offset=column.offset * row)
    return flat.reshape((len(column), *shape)).copy()


def to_image_set(table: pa.Table, shape: tuple[int, int, int], names: tuple[str, ...]) -> ImageSet:
    """Decode an image table; a table without labels gets -1 labels, which no loss accepts."""
    n = table.num_rows
    labels = table.column("label").to_numpy() if "label" in table.column_names else np.full(n, -1, np.int64)
    images = decode_images(table.column("image"), shape)
    return ImageSet(images, labels.astype(np.int64), names, table.column("id").to_numpy())


def soft_label_table(ids: np.ndarray, probs: np.ndarray) -> pa.Table:
    """Soft labels (N×K float32) by sample id."""
    values = pa.array(np.ascontiguousarray(probs, dtype=np.float32).ravel(), pa.float32())
    rows = pa.FixedSizeListArray.from_arrays(values, probs.shape[1])
    return pa.table({"id": pa.array(ids, pa.int64()), "soft_label": rows})


def decode_soft_labels(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    k = column.type.list_size
    return column.flatten().to_numpy().reshape(-1, k).astype(np.float32)


def label_table(ids: np.ndarray, labels: np.ndarray) -> pa.Table:
    """True labels by sample id (the experimenter's; never a student's input)."""
    return pa.table({"id": pa.array(ids, pa.int64()), "label": pa.array(labels, pa.int64())})


def read_head(uri: str, columns: list[str], rows: int) -> pa.Table:
    """The first `rows` rows of a table (file or folder) without reading the rest."""
    import pyarrow.dataset as ds

    fs, path = artifacts.filesystem(uri)
    return ds.dataset(path, filesystem=fs, format="parquet").head(rows, columns=columns)
