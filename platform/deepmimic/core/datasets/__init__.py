"""The data-set registry: each entry names its reader, image shape, classes and
where its files are by default. A new data set is one reader module plus one
line in `DATASETS`; the config derives its names, shapes and classes from here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ...errors import UserError
from ..images import Dataset
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .idx import DIGIT_CLASSES, FASHION_CLASSES, load_idx
from .image_folder import load_image_folder
from .parquet_images import load_parquet
from .source import Source
from .tiny_imagenet import check_tiny_imagenet, load_tiny_imagenet


@dataclass(frozen=True)
class DatasetEntry:
    reader: Callable[[Source], Dataset]
    shape: tuple[int, int, int] | None          # C×H×W of every image; None: the user's files say
    num_classes: int | None
    default_root: str | None = None            # None: the user must name dataset.root
    takes_root: bool = True                    # False: bundled with a package, or named by dataset.train
    check: Callable[[Path], None] | None = None  # a cheap layout check instead of reading it all
    own_data: bool = False                     # users' own images: takes a pool, a test_ratio, image options


def _academic(read: Callable[[Path], Dataset]) -> Callable[[Source], Dataset]:
    return lambda src: read(src.root)


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda src: load_digits(), (1, 8, 8), 10, takes_root=False),
    "mnist": DatasetEntry(_academic(lambda root: load_idx("mnist", root, DIGIT_CLASSES)), (1, 28, 28), 10),
    "fashion_mnist": DatasetEntry(_academic(lambda root: load_idx("fashion_mnist", root, FASHION_CLASSES)),
                                  (1, 28, 28), 10, default_root="/usr/share/datasets/fashion-mnist"),
    "cifar10": DatasetEntry(_academic(load_cifar10), (3, 32, 32), 10),
    "cifar100": DatasetEntry(_academic(load_cifar100), (3, 32, 32), 100),
    "tiny_imagenet": DatasetEntry(_academic(load_tiny_imagenet), (3, 64, 64), 200, check=check_tiny_imagenet),
    "image_folder": DatasetEntry(load_image_folder, None, None, own_data=True),
    "parquet": DatasetEntry(load_parquet, None, None, takes_root=False, own_data=True),
}


def entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def root_rule(name: str, root: str | Path | None) -> str | None:
    """What is wrong with giving data set `name` the root folder `root` (None for none), if anything."""
    found = entry(name)
    if not found.takes_root and root is not None:
        return f"data set {name!r} " + ("names its files with dataset.train" if found.own_data
                                        else "is bundled and reads no files") + ": remove dataset.root"
    if found.takes_root and not root and found.default_root is None:
        return f"data set {name!r} needs dataset.root: the folder holding its files"
    return None


def _root(name: str, root: str | Path | None) -> Path | None:
    problem, found = root_rule(name, root), entry(name)
    if problem:
        raise UserError(problem)
    if not found.takes_root:
        return None
    path = Path(root or found.default_root).expanduser()  # type: ignore[arg-type]
    if not path.is_dir():
        raise UserError(f"data set {name!r}: root folder {path} does not exist")
    return path


def _source(source: Source | str, root: str | Path | None) -> Source:
    src = source if isinstance(source, Source) else Source(str(source), None if root is None else Path(root))
    return replace(src, root=_root(src.name, src.root))


def load_dataset(source: Source | str, root: str | Path | None = None) -> Dataset:
    """Load a data set, named (with its `root`, or its default location) or described by a `Source`."""
    src = _source(source, root)
    return entry(src.name).reader(src)


def check_dataset(source: Source | str, root: str | Path | None = None) -> tuple[tuple[int, int, int], int]:
    """Fail fast on a missing or malformed data folder, or images not of the registered shape,
    before any cluster work starts (where the entry has a cheap check, only that).
    Returns the images' shape and the number of classes."""
    src = _source(source, root)
    found = entry(src.name)
    if found.check is not None:
        found.check(src.root)
        return found.shape, found.num_classes  # type: ignore[return-value]
    train = found.reader(src).train
    if found.shape is not None and train.shape != found.shape:
        raise UserError(f"data set {src.name!r} in {src.root}: images are {'×'.join(map(str, train.shape))}, "
                        f"expected {'×'.join(map(str, found.shape))}")
    return train.shape, train.num_classes
