"""The pool's true labels, one-hot: the paper's upper reference, the one case a student sees them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Method


@dataclass(frozen=True)
class Supervised(Method):
    name = "supervised"
    true_labels = True

    def targets(self, probs: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        assert labels is not None
        return np.eye(probs.shape[1], dtype=np.float32)[labels]
