"""Parquet tables of images and soft labels (pyarrow only, no Ray).

An image table has `id` (int64), `image` (fixed-size binary, C·H·W bytes) and,
only where labels are allowed, `label` (int64). Its schema metadata records the
image shape and class names. A soft-label table has `id` and `soft_label`
(fixed-size list of float32). Paths may be local or any URI pyarrow's file
systems understand (`s3://`, `gs://`, …); every write is atomic, and a table
gets a manifest (content hash, rows, producer) that `verify` checks; so do
JSON results, reports and plots (`write_file`, `write_json`, `read_json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import UserError
from .images import ImageSet

SHAPE_KEY = b"deepmimic.shape"
CLASSES_KEY = b"deepmimic.class_names"


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system and path for a local path or a URI."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


class TornArtifact(Exception):
    """An artifact whose manifest is missing or does not match its content."""


def write_atomic(table: pa.Table, uri: str, producer: str = "") -> None:
    """Write to a temporary name beside `uri`, then rename: readers never see half
    a file. The manifest, written last, records its hash, rows and `producer`
    (the hash of the config that made it)."""
    fs, path = filesystem(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, path)
    write_manifest(uri, table.num_rows, producer)


def write_file(data: bytes, uri: str, producer: str = "") -> None:
    """Any other artifact (JSON results, reports, plots): written atomically, then its manifest."""
    _write_bytes(data, uri)
    write_manifest(uri, None, producer)


def write_json(obj: object, uri: str, producer: str = "") -> None:
    """A JSON artifact, written atomically with a manifest; `read_json` checks it."""
    write_file(_dumps(obj), uri, producer)


def write_manifest(uri: str, rows: int | None, producer: str = "") -> None:
    """Record a finished artifact's content hash, rows (tables only) and producer beside it."""
    _write_bytes(_dumps({"sha256": content_hash(uri), "rows": rows, "producer": producer}), manifest_uri(uri))


def _write_bytes(data: bytes, uri: str) -> None:
    """A reader sees the old file or the whole new one, never half of it."""
    fs, path = filesystem(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=1, default=_plain).encode()


def manifest_uri(uri: str) -> str:
    return f"{uri}.manifest.json"


def read_manifest(uri: str) -> dict:
    """What the manifest of `uri` records, unchecked (`verify` checks it against the content)."""
    return _load_json(manifest_uri(uri))


def content_hash(uri: str) -> str:
    """SHA-256 of a file, or of a folder's files in name order (Ray Data writes folders)."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        files = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if f.type == pafs.FileType.File)
    else:
        files = [path]
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.relpath(f, path).encode())
        with fs.open_input_stream(f) as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def verify(uri: str, producer: str | None = None) -> dict:
    """The manifest of `uri` after checking it against the content; raises TornArtifact."""
    if not exists(manifest_uri(uri)) or not exists(uri):
        raise TornArtifact(f"{uri}: {'missing' if not exists(uri) else 'no manifest'}")
    try:
        manifest = read_manifest(uri)
        rows = read(uri, ["id"]).num_rows if manifest.get("rows") is not None else None
    except UserError as e:
        raise TornArtifact(str(e)) from None
    if manifest.get("sha256") != content_hash(uri) or manifest.get("rows") != rows:
        raise TornArtifact(f"{uri}: content does not match its manifest")
    if producer is not None and manifest["producer"] != producer:
        raise TornArtifact(f"{uri}: made by {manifest['producer']}, expected {producer}")
    return manifest


def intact(uri: str, producer: str | None = None) -> bool:
    """Whether `uri` is a finished artifact whose content matches its manifest."""
    try:
        verify(uri, producer)
        return True
    except TornArtifact:
        return False


def read(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = filesystem(uri)
    try:
        return pq.read_table(path, filesystem=fs, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise UserError(f"{uri}: unreadable Parquet table ({e})") from None


def image_table(images: np.ndarray, ids: np.ndarray, class_names: tuple[str, ...], labels: np.ndarray | None = None) -> pa.Table:
    """Images (uint8 N×C×H×W) as a table; `labels=None` leaves the label column out entirely."""
    n, row = len(images), int(np.prod(images.shape[1:]))
    data = np.ascontiguousarray(images, dtype=np.uint8)
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(row), n, [None, pa.py_buffer(data.tobytes())])
    cols = {"id": pa.array(ids, pa.int64()), "image": column}
    if labels is not None:
        cols["label"] = pa.array(labels, pa.int64())
    meta = {SHAPE_KEY: ",".join(map(str, images.shape[1:])).encode(), CLASSES_KEY: json.dumps(list(class_names)).encode()}
    return pa.table(cols).replace_schema_metadata(meta)


def image_shape(schema: pa.Schema) -> tuple[int, int, int]:
    meta = schema.metadata or {}
    if SHAPE_KEY not in meta:
        raise UserError("Parquet table is not a DeepMimic image table (no shape metadata)")
    return tuple(int(v) for v in meta[SHAPE_KEY].decode().split(","))  # type: ignore[return-value]


def class_names(schema: pa.Schema) -> tuple[str, ...]:
    return tuple(json.loads((schema.metadata or {})[CLASSES_KEY]))


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
    return ImageSet(decode_images(table.column("image"), shape), labels.astype(np.int64), names, table.column("id").to_numpy())


def soft_label_table(ids: np.ndarray, probs: np.ndarray) -> pa.Table:
    """Soft labels (N×K float32) by sample id."""
    values = pa.array(np.ascontiguousarray(probs, dtype=np.float32).ravel(), pa.float32())
    return pa.table({"id": pa.array(ids, pa.int64()), "soft_label": pa.FixedSizeListArray.from_arrays(values, probs.shape[1])})


def decode_soft_labels(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    k = column.type.list_size
    return column.flatten().to_numpy().reshape(-1, k).astype(np.float32)


def label_table(ids: np.ndarray, labels: np.ndarray) -> pa.Table:
    """True labels by sample id (the experimenter's; never a student's input)."""
    return pa.table({"id": pa.array(ids, pa.int64()), "label": pa.array(labels, pa.int64())})


def read_json(uri: str) -> Any:
    """A JSON artifact after checking it against its manifest; raises TornArtifact."""
    verify(uri)
    return _load_json(uri)


def _load_json(uri: str) -> Any:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise UserError(f"{uri}: unreadable JSON ({e})") from None


def _plain(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
