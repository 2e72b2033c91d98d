"""`deepmimic example-data`: scikit-learn's digits as a user's own data would look, to try it in a minute."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from ...errors import UserError
from ..splits import stratified_split
from .digits import load_digits

LABELLED_RATIO = 0.2  # the paper's: a fifth of the training images keep their class, the rest are the pool


def write_example(folder: str | Path) -> dict[str, int]:
    """Write DIR/train/<class>/*.png (a fifth of digits' training images), DIR/test/<class>/*.png and
    DIR/unlabeled/*.png (the other training images, no class). The folder appears whole or not at all."""
    folder = Path(folder).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder}: exists and is not an empty folder")
    digits = load_digits()
    split = stratified_split(digits.train.labels, LABELLED_RATIO, seed=0)
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    try:
        counts = {"train": 0, "test": 0, "unlabeled": 0}
        parts = [("train", digits.train.subset(split.mentor), True), ("test", digits.test, True),
                 ("unlabeled", digits.train.subset(split.student), False)]
        for part, images, labelled in parts:
            for image, label, sample in zip(images.images, images.labels, images.ids):
                where = staging / part / (images.class_names[label] if labelled else "")
                where.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image[0]).save(where / f"{int(sample):05d}.png")
                counts[part] += 1
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts
