"""MNIST and Fashion-MNIST from IDX files, gzipped or not.

Accepted layouts under `root`: the files directly in it (Debian's
/usr/share/datasets/fashion-mnist/), or torchvision's `<root>/MNIST/raw/` and
`<root>/FashionMNIST/raw/`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ...errors import UserError
from ..images import Dataset, ImageSet

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
LAYOUT = "IDX files {} (optionally .gz) in ROOT, ROOT/MNIST/raw or ROOT/FashionMNIST/raw".format(
    ", ".join(FILES.values())
)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (unsigned-byte data) into an array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: unreadable IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise UserError(f"{path}: IDX header says {dims}, so {expected} bytes, but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise UserError(f"{root}: missing {stem}[.gz]; expected {LAYOUT}")


def load_idx(name: str, root: Path, class_names: tuple[str, ...]) -> Dataset:
    """Read an MNIST-format data set from `root`."""
    arrays = {key: read_idx(_find(root, stem)) for key, stem in FILES.items()}

    def part(split: str) -> ImageSet:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"{root}: {split} images {images.shape} and labels {labels.shape} do not match (want N×H×W and N)"
            )
        if labels.max(initial=0) >= len(class_names):
            raise UserError(f"{root}: {split} label {labels.max()} out of range for {len(class_names)} classes")
        return ImageSet(images[:, None].copy(), labels.astype(np.int64), class_names)

    return Dataset(name, part("train"), part("test"))
