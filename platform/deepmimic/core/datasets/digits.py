"""scikit-learn's bundled 8×8 digits: the embedded default, needs no files."""

from __future__ import annotations

import numpy as np

from ..images import Dataset, ImageSet

# digits ships without a test set; this fixed, stratified quarter is ours.
TEST_FRACTION = 0.25
TEST_SEED = 0


def load_digits() -> Dataset:
    """1797 8×8 grey digits (0–16 scaled to 0–255), 1347 train / 450 test."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, stratify=labels, random_state=TEST_SEED
    )
    names = tuple(str(d) for d in range(10))
    full = ImageSet(images, labels, names)
    return Dataset("digits", full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx)))
