"""torchvision's ImageFolder layout: `root/train/<class>/*` and `root/test/<class>/*`, any image Pillow reads.

Written here because torchvision cannot be imported on this project's CPU torch, and its
ImageFolder neither names a broken file nor checks sizes before training starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from ..images import Dataset, ImageSet
from .image_files import SUFFIXES, decode_all, inside, is_image_name
from .source import Source


def class_files(folder: Path, classes: tuple[str, ...] | None = None) -> dict[str, list[Path]]:
    """Each class folder's image files, classes sorted by name; every mistake in the layout is one line."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (expected {folder.name}/<class>/<image>)")
    loose = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if loose:
        raise UserError(f"{loose[0]}: a file directly in {folder.name}/; images go in {folder.name}/<class>/ "
                        "(an unlabelled pool goes in its own folder, named by dataset.unlabeled)")
    found = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = sorted(inside(p, folder) for p in inside(class_dir, folder).iterdir() if not p.name.startswith("."))
        nested = [p for p in entries if p.is_dir()]
        if nested:
            raise UserError(f"{nested[0]}: a folder inside class folder {class_dir.name}/; a class folder holds "
                            "images only (an unlabelled pool goes in its own folder, named by dataset.unlabeled)")
        others = [p for p in entries if not is_image_name(p.name)]
        if others:
            raise UserError(f"{others[0]}: not an image file (expected {', '.join(SUFFIXES)})")
        if not entries:
            raise UserError(f"{class_dir}: empty class folder")
        found[class_dir.name] = entries
    if not found:
        raise UserError(f"{folder}: no class folders (expected {folder.name}/<class>/<image>)")
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(f"{folder / unknown[0]}: class {unknown[0]!r} is not among train/'s classes")
    return found


def _read(files: dict[str, list[Path]], names: tuple[str, ...], src: Source, mode: str | None) -> tuple[ImageSet, str]:
    paths = [p for c in files for p in files[c]]
    labels = np.array([names.index(c) for c in files for _ in files[c]], np.int64)
    images, _, mode = decode_all([(str(p), str(p)) for p in paths], src.image, mode)
    return ImageSet(images, labels, names), mode


def load_image_folder(src: Source) -> Dataset:
    """The labelled images under `src.root`; without `test/`, a stratified `test_ratio` of train/ is the test set."""
    root = src.root
    train_files = class_files(root / "train")
    names = tuple(train_files)
    train, mode = _read(train_files, names, src, None)
    if (root / "test").is_dir():
        if src.test_ratio is not None:
            raise UserError(f"dataset.test_ratio: {root / 'test'} exists and is the test set; remove test_ratio")
        test, _ = _read(class_files(root / "test", names), names, src, mode)
        if test.shape != train.shape:
            raise UserError(f"{root / 'test'}: images are {test.shape}, train/'s are {train.shape}")
        return Dataset(src.name, train, test)
    return hold_out(src.name, train, src.held_out_ratio)


def hold_out(name: str, train: ImageSet, ratio: float) -> Dataset:
    """A stratified `ratio` of `train` as the test set (a fixed draw: the same test set on every run)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(train.labels, minlength=train.num_classes)
    if counts.min() < 2:
        raise UserError(f"class {train.class_names[int(counts.argmin())]!r} has {counts.min()} image: holding out "
                        "a test set needs at least 2 per class (or give a test set)")
    n_test = max(train.num_classes, int(round(ratio * len(train))))
    if n_test >= len(train) - train.num_classes + 1:
        raise UserError(f"dataset.test_ratio {ratio}: leaves too few training images")
    kept, held = train_test_split(np.arange(len(train)), test_size=n_test, stratify=train.labels, random_state=0)
    return Dataset(name, train.subset(np.sort(kept)), train.subset(np.sort(held)))
