"""Pseudo-labels: the mentor's argmax, one-hot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Method


@dataclass(frozen=True)
class Hard(Method):
    name = "hard"

    def targets(self, probs: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return np.eye(probs.shape[1], dtype=np.float32)[probs.argmax(1)]
