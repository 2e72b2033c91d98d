"""The data-set registry: each entry names its reader, image shape, classes and
where its files are by default. A new data set is one reader module plus one
line in `DATASETS`; the config derives its names, shapes and classes from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import UserError
from ..images import Dataset
from .cifar import CIFAR10_CLASSES, load_cifar10, load_cifar100
from .digits import load_digits
from .idx import DIGIT_CLASSES, FASHION_CLASSES, load_idx
from .tiny_imagenet import check_tiny_imagenet, load_tiny_imagenet


@dataclass(frozen=True)
class DatasetEntry:
    reader: Callable[[Path], Dataset]
    shape: tuple[int, int, int]                # C×H×W of every image
    num_classes: int
    class_names: tuple[str, ...] | None = None  # None: named by its files
    default_root: str | None = None            # None: the user must name dataset.root
    takes_root: bool = True                    # False: bundled with a package, no files to point at
    check: Callable[[Path], None] | None = None  # a cheap layout check instead of reading it all


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda root: load_digits(), (1, 8, 8), 10, DIGIT_CLASSES, takes_root=False),
    "mnist": DatasetEntry(lambda root: load_idx("mnist", root, DIGIT_CLASSES), (1, 28, 28), 10, DIGIT_CLASSES),
    "fashion_mnist": DatasetEntry(lambda root: load_idx("fashion_mnist", root, FASHION_CLASSES), (1, 28, 28), 10,
                                  FASHION_CLASSES, default_root="/usr/share/datasets/fashion-mnist"),
    "cifar10": DatasetEntry(load_cifar10, (3, 32, 32), 10, CIFAR10_CLASSES),
    "cifar100": DatasetEntry(load_cifar100, (3, 32, 32), 100),
    "tiny_imagenet": DatasetEntry(load_tiny_imagenet, (3, 64, 64), 200, check=check_tiny_imagenet),
}


def entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _root(name: str, root: str | Path | None) -> Path:
    found = entry(name)
    if not found.takes_root:
        if root is not None:
            raise UserError(f"data set {name!r} is bundled and reads no files: remove dataset.root")
        return Path()
    root = root if root is not None else found.default_root
    if root is None:
        raise UserError(f"data set {name!r} needs dataset.root: the folder holding its files")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"data set {name!r}: root folder {path} does not exist")
    return path


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a data set by name from `root` (or its default location)."""
    return entry(name).reader(_root(name, root))


def check_dataset(name: str, root: str | Path | None) -> None:
    """Fail fast on a missing or malformed data folder, or images not of the registered shape,
    before any cluster work starts (where the entry has a cheap check, only that)."""
    path, found = _root(name, root), entry(name)
    if found.check is not None:
        found.check(path)
        return
    shape = found.reader(path).train.shape
    if shape != found.shape:
        raise UserError(f"data set {name!r} in {path}: images are {'×'.join(map(str, shape))}, "
                        f"expected {'×'.join(map(str, found.shape))}")
