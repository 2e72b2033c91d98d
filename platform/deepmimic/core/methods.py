"""The method registry: what a student learns from, made from its mentor's answers.

A method turns the mentor's probabilities for the pool (and, for the one
reference method, the pool's true labels) into the student's target rows, and
says which config fields it takes. Adding one is a function plus one line in
`METHODS`; the config, the student sets and the report read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Method:
    targets: Callable[[np.ndarray, np.ndarray | None, float], np.ndarray]  # (probs, true labels, T) -> N×K rows
    takes: tuple[str, ...] = ()        # config fields it reads besides `method` (e.g. temperature)
    true_labels: bool = False          # learns from the pool's true labels: the supervised reference only

    def temperature(self, configured: float) -> float:
        """The temperature its loss uses: the configured one where it takes one, else 1."""
        return configured if "temperature" in self.takes else 1.0


def _soft(probs: np.ndarray, labels: np.ndarray | None, temperature: float) -> np.ndarray:
    """DeepMimic (the paper): the mentor's probabilities as they are."""
    return probs


def _softened(probs: np.ndarray, labels: np.ndarray | None, temperature: float) -> np.ndarray:
    """Hinton et al.: p^(1/T) renormalised, which is softmax(logits / T)."""
    q = probs.astype(np.float64) ** (1.0 / temperature)
    return q / q.sum(1, keepdims=True)


def _hard(probs: np.ndarray, labels: np.ndarray | None, temperature: float) -> np.ndarray:
    """Pseudo-labels: the mentor's argmax, one-hot."""
    return np.eye(probs.shape[1], dtype=np.float32)[probs.argmax(1)]


def _supervised(probs: np.ndarray, labels: np.ndarray | None, temperature: float) -> np.ndarray:
    """The pool's true labels, one-hot: the paper's upper reference, the one case a student sees them."""
    assert labels is not None
    return np.eye(probs.shape[1], dtype=np.float32)[labels]


METHODS: dict[str, Method] = {
    "deepmimic": Method(_soft),
    "hinton": Method(_softened, takes=("temperature",)),
    "hard": Method(_hard),
    "supervised": Method(_supervised, true_labels=True),
}
