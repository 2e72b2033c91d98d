"""A separate unlabelled pool: a folder of images at any depth, or Parquet files whose image column is
the only one ever read. It is cut into parts that are decoded independently (by Ray Data, or here for a
small pool), each part knowing the ids of its rows, so ids are stable whoever decodes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import UserError
from .image_files import decode_all, image_files
from .parquet_images import decode_column, expand, open_file
from .source import Source

PART_IMAGES = 2048  # image files per part: a part is one Ray Data row, decoded in one call


@dataclass(frozen=True)
class PoolPart:
    """`files` (image files), or row group `row_group` of Parquet file `parquet`; its rows' ids start at `first_id`."""

    first_id: int
    rows: int
    files: tuple[str, ...] = ()
    parquet: str | None = None
    row_group: int = 0


@dataclass(frozen=True)
class PoolListing:
    parts: tuple[PoolPart, ...]
    skipped: int  # files that are not images, where `skip_unreadable` allows skipping them

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


def list_pool(src: Source) -> PoolListing:
    """The pool's parts (files listed, Parquet metadata read, nothing decoded)."""
    location = src.unlabeled
    if location is None:
        raise UserError("no dataset.unlabeled pool given")
    folder = Path(location).expanduser()
    if "://" not in location and folder.is_dir() and not any(folder.rglob("*.parquet")):
        return _folder_parts(folder, src)
    parts, first = [], 0
    for uri in expand([location], "dataset.unlabeled"):
        file = open_file(uri)
        if src.image_column not in file.schema_arrow.names:
            raise UserError(f"{uri}: no column {src.image_column!r} (columns: {', '.join(file.schema_arrow.names)}; "
                            "set dataset.image_column)")
        for g in range(file.metadata.num_row_groups):
            rows = file.metadata.row_group(g).num_rows
            parts.append(PoolPart(first, rows, parquet=uri, row_group=g))
            first += rows
    return _nonempty(PoolListing(tuple(parts), 0), location)


def _folder_parts(folder: Path, src: Source) -> PoolListing:
    root = src.root.resolve() if src.root else None
    if root is not None and (root / "train") in [folder.resolve(), *folder.resolve().parents]:
        raise UserError(f"dataset.unlabeled {folder}: inside {root / 'train'}, whose folders are classes; "
                        "keep the pool in a folder of its own")
    files = image_files(folder, src.skip_unreadable)
    skipped = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) - len(files)
    parts = tuple(PoolPart(i, len(files[i:i + PART_IMAGES]), files=tuple(map(str, files[i:i + PART_IMAGES])))
                  for i in range(0, len(files), PART_IMAGES))
    return _nonempty(PoolListing(parts, skipped), str(folder))


def _nonempty(listing: PoolListing, where: str) -> PoolListing:
    if listing.rows == 0:
        raise UserError(f"dataset.unlabeled {where}: no images")
    return listing


def decode_part(part: PoolPart, src: Source, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """One part's ids, uint8 images of the labelled images' `shape`, and how many were unreadable (skipped
    with `skip_unreadable`, else the first is an error naming it)."""
    mode = "L" if shape[0] == 1 else "RGB"
    if part.parquet is None:
        sources = [(f, f) for f in part.files]
        images, kept, _ = decode_all(sources, src.image, mode, src.skip_unreadable)
        first = part.files[int(kept[0])] if len(kept) else part.files[0]
    else:
        column = open_file(part.parquet).read_row_group(part.row_group, columns=[src.image_column])
        images, kept, _ = decode_column(column.column(0), part.parquet, src.image_column, src.image, mode,
                                        src.skip_unreadable)
        first = f"{part.parquet} row group {part.row_group}"
    if not len(kept):
        return np.zeros(0, np.int64), np.zeros((0, *shape), np.uint8), part.rows
    if images.shape[1:] != shape:
        raise UserError(f"{first}: pool images are {'×'.join(map(str, images.shape[1:]))}, the labelled images "
                        f"{'×'.join(map(str, shape))} (set dataset.image_size: [H, W] to resize both)")
    return part.first_id + kept, images, part.rows - len(kept)
