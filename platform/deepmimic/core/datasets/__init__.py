"""Data-set readers: each returns a `Dataset` of uint8 N×C×H×W images."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...errors import UserError
from ..images import Dataset
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .idx import DIGIT_CLASSES, FASHION_CLASSES, load_idx
from .tiny_imagenet import check_tiny_imagenet, load_tiny_imagenet

# name -> (reader taking the root folder, default root or None when a root is required)
READERS: dict[str, tuple[Callable[[Path], Dataset], str | None]] = {
    "digits": (lambda root: load_digits(), ""),
    "mnist": (lambda root: load_idx("mnist", root, DIGIT_CLASSES), None),
    "fashion_mnist": (lambda root: load_idx("fashion_mnist", root, FASHION_CLASSES), "/usr/share/datasets/fashion-mnist"),
    "cifar10": (load_cifar10, None),
    "cifar100": (load_cifar100, None),
    "tiny_imagenet": (load_tiny_imagenet, None),
}


def _root(name: str, root: str | Path | None) -> Path:
    if name not in READERS:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(READERS)}")
    default = READERS[name][1]
    if root is None:
        if default is None:
            raise UserError(f"data set {name!r} needs dataset.root: the folder holding its files")
        root = default
    path = Path(root).expanduser()
    if name != "digits" and not path.is_dir():
        raise UserError(f"data set {name!r}: root folder {path} does not exist")
    return path


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a data set by name from `root` (or its default location)."""
    path = _root(name, root)  # first: it names an unknown data set, which the lookup below would not
    return READERS[name][0](path)


def check_dataset(name: str, root: str | Path | None, shape: tuple[int, int, int]) -> None:
    """Fail fast on a missing or malformed data folder, or images not of `shape`,
    before any cluster work starts (Tiny ImageNet: its layout and first images only)."""
    path = _root(name, root)
    if name == "tiny_imagenet":
        check_tiny_imagenet(path)
        return
    found = load_dataset(name, path).train.shape
    if found != shape:
        raise UserError(f"data set {name!r} in {path}: images are {'×'.join(map(str, found))}, "
                        f"expected {'×'.join(map(str, shape))}")
