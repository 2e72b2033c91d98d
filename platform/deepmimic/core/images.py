"""In-memory image sets: the one data format every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N×C×H×W, labels as int64 N, and the class names.

    `ids` are stable sample ids: they survive splits and variants, so a soft
    label can always be joined back to its image.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        if self.ids is None:
            object.__setattr__(self, "ids", np.arange(len(self.images), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one image, C×H×W."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> "ImageSet":
        """The samples at `index`, ids kept."""
        return ImageSet(self.images[index], self.labels[index], self.class_names, self.ids[index])


@dataclass(frozen=True)
class Dataset:
    """A data set's official train and test parts."""

    name: str
    train: ImageSet
    test: ImageSet


def hold_out_classes(dataset: Dataset, names: list[str]) -> tuple[Dataset, ImageSet]:
    """Remove classes `names` from train and test (labels renumbered) and return
    them apart: their training images become out-of-domain candidates."""
    all_names = dataset.train.class_names
    missing = [n for n in names if n not in all_names]
    if missing:
        raise ValueError(f"no class {missing[0]!r} in {dataset.name} (classes: {', '.join(all_names)})")
    held = np.array([all_names.index(n) for n in names])
    kept_names = tuple(n for n in all_names if n not in names)
    remap = np.full(len(all_names), -1, np.int64)
    remap[[all_names.index(n) for n in kept_names]] = np.arange(len(kept_names))

    def keep(part: ImageSet) -> ImageSet:
        mask = ~np.isin(part.labels, held)
        sub = part.subset(np.flatnonzero(mask))
        return ImageSet(sub.images, remap[sub.labels], kept_names, sub.ids)

    out = dataset.train.subset(np.flatnonzero(np.isin(dataset.train.labels, held)))
    return Dataset(dataset.name, keep(dataset.train), keep(dataset.test)), out


def select_classes(images: ImageSet, names: list[str]) -> ImageSet:
    """The samples of the named classes (e.g. CIFAR-100 classes used as out-of-domain images)."""
    missing = [n for n in names if n not in images.class_names]
    if missing:
        raise ValueError(f"no class {missing[0]!r} (classes: {', '.join(images.class_names[:10])}, …)")
    wanted = [images.class_names.index(n) for n in names]
    return images.subset(np.flatnonzero(np.isin(images.labels, wanted)))
