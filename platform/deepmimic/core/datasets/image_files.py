"""Users' image files, decoded by Pillow into the core's uint8 C×H×W arrays.

Every failure names the file: a user with ten thousand images must learn which
one is broken, not that "an image" is.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import UserError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Modes with 8 bits a channel, which convert to grey or RGB as they look; a deeper image (16-bit, 32-bit integer or
# float) would be clipped to 255 by that conversion, so it is refused rather than silently changed.
EIGHT_BIT = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


class Unreadable(UserError):
    """One image file (or Parquet cell) that is not a readable image: skippable in a large pool."""


@dataclass(frozen=True)
class ImageFormat:
    """What every image becomes: `size` (H, W) to resize to, or None (all must share one size);
    `channels` 1 or 3, or None (grey if the first image is grey, else RGB)."""

    size: tuple[int, int] | None = None
    channels: int | None = None

    def mode(self, first: Image.Image) -> str:
        channels = self.channels or (1 if first.mode in ("1", "L", "LA") else 3)
        return "L" if channels == 1 else "RGB"


def inside(path: Path, folder: Path) -> Path:
    """`path` where a link among a user's files leads inside `folder`; a UserError naming it where it leads out:
    nothing is read from outside the folders a config names."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(os.path.realpath(folder)):
            raise UserError(f"{path}: a link to {target}, outside {folder}: files outside the folders the config "
                            "names are not read (copy it in, or name a folder holding both)")
    return path


def is_image_name(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def open_image(source: str | bytes, name: str) -> Image.Image:
    """A fully decoded Pillow image (a truncated file fails here, not later), or `Unreadable` naming it."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except Image.DecompressionBombError:
        raise Unreadable(f"{name}: too large to decode (over Pillow's {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:  # its message repeats the file's name, or a BytesIO's repr for a cell
        raise Unreadable(f"{name}: not a readable image (no image format Pillow knows)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise Unreadable(f"{name}: not a readable image ({type(e).__name__}: {e})") from None
    if image.mode not in EIGHT_BIT:
        raise Unreadable(f"{name}: an image of mode {image.mode}; 8-bit grey, RGB or palette images only (converting "
                         "this one would clip it): convert it to 8 bits a channel")
    return image


def to_array(image: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 C×H×W in `mode` ("L" or "RGB"), resized to `size` (H, W) where given."""
    image = image.convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_all(sources: list[tuple[str | bytes, str]], fmt: ImageFormat, mode: str | None = None,
               skip_unreadable: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """Decode `(file or bytes, name)` pairs into one uint8 N×C×H×W array.

    Returns the images, the positions decoded (all unless `skip_unreadable`) and the mode used.
    Without `fmt.size` every image must have the first one's size: a one-line error names two
    files of different sizes.
    """
    arrays, kept, first_name, first_size = [], [], None, None
    for i, (source, name) in enumerate(sources):
        try:
            image = open_image(source, name)
        except Unreadable:
            if skip_unreadable:
                continue
            raise
        mode = mode or fmt.mode(image)
        if fmt.size is None:
            if first_size is None:
                first_name, first_size = name, image.size
            elif image.size != first_size:
                raise UserError(f"images of different sizes: {first_name} is {first_size[0]}×{first_size[1]}, "
                                f"{name} is {image.size[0]}×{image.size[1]} (set dataset.image_size: [H, W])")
        arrays.append(to_array(image, mode, fmt.size))
        kept.append(i)
    if not arrays and skip_unreadable:
        return np.zeros((0, 0, 0, 0), np.uint8), np.zeros(0, np.int64), mode or "L"
    if not arrays:
        raise UserError(f"no readable image among {len(sources)} (first: {sources[0][1] if sources else '-'})")
    return np.stack(arrays), np.asarray(kept, np.int64), mode or "L"


def image_files(folder: Path, skip_unreadable: bool = False) -> list[Path]:
    """Every image below `folder`, at any depth, in a stable order; a file that is not an image is an
    error (skipped with `skip_unreadable`). Dot files (.DS_Store, editors' files) are not data: ignored."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        linked = [d for d in dirs if inside(Path(parent) / d, folder).is_symlink()]
        if linked:  # os.walk would pass over it in silence; following it may read images twice, or forever
            raise UserError(f"{Path(parent) / linked[0]}: a link to a folder, not followed: put the images "
                            "themselves in the pool's folder")
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = inside(Path(parent) / name, folder)
            if is_image_name(name):
                found.append(path)
            elif not skip_unreadable:
                raise UserError(f"{path}: not an image file (expected {', '.join(SUFFIXES)})")
    return found
