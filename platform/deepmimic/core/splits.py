"""Stratified mentor/student splits and the paper's student-pool variants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Row indices into the training set: the mentor's labelled part and the
    student's pool (whose labels the student never receives)."""

    mentor: np.ndarray
    student: np.ndarray


def stratified_split(labels: np.ndarray, mentor_ratio: float, seed: int) -> Split:
    """Give each class `mentor_ratio` of its samples (rounded, at least one) to the mentor."""
    if not 0.0 < mentor_ratio < 1.0:
        raise ValueError(f"mentor_ratio must be in (0, 1), got {mentor_ratio}")
    rng = np.random.default_rng(seed)
    mentor, student = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(1, int(round(mentor_ratio * len(idx)))), len(idx) - 1) if len(idx) > 1 else len(idx)
        mentor.append(idx[:k])
        student.append(idx[k:])
    return Split(np.sort(np.concatenate(mentor)), np.sort(np.concatenate(student)))


def unbalanced(labels: np.ndarray, bound: float, seed: int) -> np.ndarray:
    """Table 3's unbalanced pool: remove a random fraction in [0, bound] of each class.

    `labels` are the pool's true labels, used only by the experimenter to build
    the variant; the returned positions select the rows the student keeps.
    """
    if not 0.0 <= bound < 1.0:
        raise ValueError(f"removal bound must be in [0, 1), got {bound}")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        removed = int(round(rng.uniform(0.0, bound) * len(idx)))
        keep.append(idx[removed:])
    return np.sort(np.concatenate(keep))


def out_of_domain(pool_labels: np.ndarray, ood_count: int, ratio: float, seed: int) -> np.ndarray:
    """Table 4's out-of-domain addition: pick up to `ratio` × (mean class size of
    the pool) images per pool class from `ood_count` candidates, at most all of them.

    Returns positions into the out-of-domain candidates.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"out-of-domain ratio must be in [0, 1], got {ratio}")
    rng = np.random.default_rng(seed)
    classes = np.unique(pool_labels)
    per_class = [int(round(rng.uniform(0.0, ratio) * np.sum(pool_labels == c))) for c in classes]
    total = min(sum(per_class), ood_count)
    return np.sort(rng.choice(ood_count, size=total, replace=False))
