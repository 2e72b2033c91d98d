"""Tiny ImageNet: `ROOT/tiny-imagenet-200/` with wnids.txt, words.txt,
train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt.

The official test part has no labels, so the labelled `val` part is the test set,
as in the paper. Pillow decodes the JPEGs; it is imported only here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from ..images import Dataset, ImageSet

FOLDER = "tiny-imagenet-200"
LAYOUT = f"ROOT/{FOLDER}/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt"
SIDE = 64


def _read_jpeg(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise UserError(f"{path}: unreadable image ({e}); expected {LAYOUT}") from None
    if arr.shape != (SIDE, SIDE, 3):
        raise UserError(f"{path}: image is {arr.shape[1]}×{arr.shape[0]}, expected {SIDE}×{SIDE}")
    return arr.transpose(2, 0, 1)


def _stack(paths: list[Path], labels: list[int], names: tuple[str, ...]) -> ImageSet:
    images = np.stack([_read_jpeg(p) for p in paths]) if paths else np.zeros((0, 3, SIDE, SIDE), np.uint8)
    return ImageSet(images, np.asarray(labels, dtype=np.int64), names)


def _required(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"missing {path}; expected {LAYOUT}")
    return path


def _listing(root: Path) -> tuple[tuple[str, ...], list[Path], list[int], list[Path], list[int]]:
    """Class names, and the train and val image paths with their labels."""
    folder = root if root.name == FOLDER else root / FOLDER
    wnids = _required(folder / "wnids.txt").read_text().split()
    if not wnids:
        raise UserError(f"{folder / 'wnids.txt'}: no class ids")
    words = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    names = tuple(words.get(w, w) for w in wnids)
    index = {w: i for i, w in enumerate(wnids)}

    train_paths, train_labels = [], []
    for wnid in wnids:
        found = sorted(_required(folder / "train" / wnid / "images").glob("*.JPEG"))
        train_paths += found
        train_labels += [index[wnid]] * len(found)

    annotations = _required(folder / "val" / "val_annotations.txt")
    val_paths, val_labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(f"{annotations}:{n}: expected 'FILE<TAB>WNID<TAB>x<TAB>y<TAB>w<TAB>h' with a known wnid")
        val_paths.append(_required(folder / "val" / "images" / fields[0]))
        val_labels.append(index[fields[1]])
    return names, train_paths, train_labels, val_paths, val_labels


def load_tiny_imagenet(root: Path) -> Dataset:
    """200 classes of 64×64 colour images: 500 train and 50 val images each."""
    names, train_paths, train_labels, val_paths, val_labels = _listing(root)
    return Dataset(
        "tiny_imagenet", _stack(train_paths, train_labels, names), _stack(val_paths, val_labels, names)
    )


def check_tiny_imagenet(root: Path) -> None:
    """The layout, every listed file, and the first train and val image, without decoding 110,000 JPEGs."""
    _, train_paths, _, val_paths, _ = _listing(root)
    for paths in (train_paths, val_paths):
        if not paths:
            raise UserError(f"{root}: no images found; expected {LAYOUT}")
        _read_jpeg(paths[0])
