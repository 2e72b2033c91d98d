"""scikit-learn's bundled 8×8 digits: the embedded default, needs no files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import Dataset, ImageSet

# digits ships without a test set; this fixed, stratified quarter is ours.
TEST_FRACTION = 0.25
TEST_SEED = 0
# scikit-learn's digits scaled to 0–255 with our test quarter marked, saved by `reference_digits` below: reading
# it takes milliseconds, where importing scikit-learn took about a second in every process that loaded digits
# (each trial's). tests/core/test_datasets.py checks it against scikit-learn's own.
EMBEDDED = Path(__file__).with_name("digits.npz")


def load_digits() -> Dataset:
    """1797 8×8 grey digits (0–16 scaled to 0–255), 1347 train / 450 test."""
    with np.load(EMBEDDED) as saved:
        images, labels, test = saved["images"][:, None, :, :], saved["labels"].astype(np.int64), saved["test"]
    full = ImageSet(images, labels, tuple(str(d) for d in range(10)))
    return Dataset("digits", full.subset(np.flatnonzero(~test)), full.subset(np.flatnonzero(test)))


def reference_digits() -> dict[str, np.ndarray]:
    """What `EMBEDDED` holds, made from scikit-learn: its digits scaled to 0–255 and our stratified test quarter.
    `np.savez_compressed(EMBEDDED, **reference_digits())` remakes the file."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    labels = bunch.target.astype(np.uint8)
    _, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels,
                                   random_state=TEST_SEED)
    test = np.zeros(len(labels), bool)
    test[test_idx] = True
    return {"images": np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8), "labels": labels, "test": test}
