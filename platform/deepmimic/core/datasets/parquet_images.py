"""Images in Parquet files (local, s3://, gs://, through pyarrow): an image column of encoded PNG/JPEG
bytes or fixed-shape arrays, and in labelled files a label column of integers or strings."""

from __future__ import annotations

import fnmatch
import os

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ...errors import UserError
from ..images import Dataset, ImageSet
from .image_files import ImageFormat, decode_all, to_array
from .image_folder import hold_out
from .source import Source


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """The file system, path within it, and the prefix that makes a path a URI again."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path, uri.split("://", 1)[0] + "://"
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri)), ""


def expand(patterns: tuple[str, ...] | list[str], what: str) -> list[str]:
    """The files `patterns` name (a folder: its .parquet files; globs expanded; sorted), local or URIs;
    a pattern that matches nothing is an error."""
    found: list[str] = []
    for pattern in patterns:
        fs, path, prefix = _filesystem(pattern)
        magic = min((path.find(c) for c in "*?[" if c in path), default=-1)
        info = fs.get_file_info(path) if magic < 0 else None
        if info is not None and info.type == pafs.FileType.File:
            matches = [path]
        else:
            base = path if magic < 0 else path[:magic].rsplit("/", 1)[0]
            wanted = f"{path}/*.parquet" if magic < 0 else path
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            matches = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, wanted)
                             and not i.base_name.startswith(("_", ".")))
        if not matches:
            raise UserError(f"{what}: {pattern!r} matches no file")
        found += [prefix + m for m in matches]
    return found


def open_file(uri: str) -> pq.ParquetFile:
    try:
        fs, path = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
        return pq.ParquetFile(fs.open_input_file(path))
    except (OSError, pa.ArrowInvalid) as e:
        raise UserError(f"{uri}: not a readable Parquet file ({e})") from None


def read_columns(uri: str, columns: list[str]) -> pa.Table:
    """`columns` of one file, and only those: a pool's label column is never read."""
    file = open_file(uri)
    missing = [c for c in columns if c not in file.schema_arrow.names]
    if missing:
        raise UserError(f"{uri}: no column {missing[0]!r} (columns: {', '.join(file.schema_arrow.names)}; "
                        "set dataset.image_column / label_column)")
    return file.read(columns=columns)


def decode_column(column: pa.ChunkedArray, uri: str, name: str, fmt: ImageFormat, mode: str | None,
                  skip_unreadable: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """Images of one column: encoded bytes through Pillow, or fixed-shape arrays (H×W or H×W×C)."""
    kind = column.type
    if len(column) == 0:
        raise UserError(f"{uri}: no rows")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        cells = column.to_pylist()
        return decode_all([(b or b"", f"{uri} row {i}{' (null)' if b is None else ''}") for i, b in enumerate(cells)],
                          fmt, mode, skip_unreadable)
    if isinstance(kind, pa.FixedShapeTensorType):
        arrays = column.combine_chunks().to_numpy_ndarray()
    elif pa.types.is_fixed_size_list(kind):
        arrays = np.asarray(column.to_pylist())
    else:
        raise UserError(f"{uri}: column {name!r} is {kind}: expected encoded image bytes (binary) "
                        "or fixed-shape arrays")
    if arrays.dtype != np.uint8 and not (arrays.size and 0 <= arrays.min() and arrays.max() <= 255
                                         and np.issubdtype(arrays.dtype, np.integer)):
        raise UserError(f"{uri}: column {name!r} holds {arrays.dtype} values: expected uint8 pixels (0-255)")
    if arrays.ndim not in (3, 4):
        raise UserError(f"{uri}: column {name!r} holds {arrays.ndim - 1}-d arrays: expected H×W or H×W×C")
    from PIL import Image

    images = [Image.fromarray(a.astype(np.uint8).squeeze(-1) if a.ndim == 3 and a.shape[-1] == 1
                              else a.astype(np.uint8)) for a in arrays]
    mode = mode or fmt.mode(images[0])
    out = np.stack([to_array(im, mode, fmt.size) for im in images]) if images else np.zeros((0, 1, 1, 1), np.uint8)
    return out, np.arange(len(out)), mode


def _labels(column: pa.ChunkedArray, uri: str, src: Source) -> tuple[np.ndarray, tuple[str, ...] | None]:
    kind, name = column.type, src.label_column
    if column.null_count:
        raise UserError(f"{uri}: column {name!r} has {column.null_count} empty labels")
    if pa.types.is_integer(kind):
        values = column.to_numpy().astype(np.int64)
        if len(values) and values.min() < 0:
            raise UserError(f"{uri}: column {name!r} has negative label {values.min()}")
        return values, None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return np.asarray(column.to_pylist(), dtype=object), None
    raise UserError(f"{uri}: label column {name!r} is {kind}: expected integers or strings")


def _read_labelled(patterns: tuple[str, ...], what: str, src: Source, mode: str | None
                   ) -> tuple[np.ndarray, np.ndarray, str]:
    images, labels = [], []
    for uri in expand(patterns, what):
        table = read_columns(uri, [src.image_column, src.label_column])
        x, _, mode = decode_column(table.column(src.image_column), uri, src.image_column, src.image, mode)
        images.append(x)
        labels.append(_labels(table.column(src.label_column), uri, src)[0])
    shapes = {x.shape[1:] for x in images if len(x)}
    if len(shapes) > 1:
        raise UserError(f"{what}: files hold images of different shapes {sorted(shapes)} (set dataset.image_size)")
    kinds = {lab.dtype.kind for lab in labels}
    if len(kinds) > 1:
        raise UserError(f"{what}: label columns mix integers and strings across files")
    return np.concatenate(images), np.concatenate(labels), mode


def _index(labels: np.ndarray, names: tuple[str, ...] | None, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices and names: strings are looked up in `names` (default: the sorted values)."""
    if labels.dtype.kind == "O":
        names = names or tuple(sorted(set(labels)))
        lookup = {n: i for i, n in enumerate(names)}
        unknown = [v for v in labels if v not in lookup]
        if unknown:
            raise UserError(f"{what}: label {unknown[0]!r} is not in dataset.class_names")
        return np.array([lookup[v] for v in labels], np.int64), names
    names = names or tuple(str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0))
    if len(labels) and labels.max() >= len(names):
        raise UserError(f"{what}: label {labels.max()} but {len(names)} class names")
    return labels.astype(np.int64), names


def load_parquet(src: Source) -> Dataset:
    """The labelled images of `src.train` (and `src.test`, else a held-out `test_ratio` of train)."""
    if not src.train:
        raise UserError("data set 'parquet' needs dataset.train: Parquet files or globs of labelled images")
    images, labels, mode = _read_labelled(src.train, "dataset.train", src, None)
    index, names = _index(labels, src.class_names, "dataset.train")
    train = ImageSet(images, index, names)
    if not src.test:
        return hold_out(src.name, train, src.held_out_ratio)
    if src.test_ratio is not None:
        raise UserError("dataset.test_ratio: dataset.test is the test set; remove test_ratio")
    test_images, test_labels, _ = _read_labelled(src.test, "dataset.test", src, mode)
    if test_labels.dtype.kind != labels.dtype.kind:
        raise UserError("dataset.test: its labels are not of train's type (integers or strings)")
    test_index, _ = _index(test_labels, names, "dataset.test")
    if test_images.shape[1:] != images.shape[1:]:
        raise UserError(f"dataset.test: images are {test_images.shape[1:]}, train's are {images.shape[1:]}")
    return Dataset(src.name, train, ImageSet(test_images, test_index, names))
