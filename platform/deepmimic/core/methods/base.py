"""What every method is: its knobs (dataclass fields), its targets, its loss."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Method:
    """What a student learns from its mentor's answers, and how its loss weighs them.

    Its fields are its knobs (validated by the config as `method: {name: …, knob: value}`). `targets` turns the
    mentor's probabilities for the pool (and, where `true_labels`, the pool's true classes) into the student's
    target rows, once, when its set is built (for a `teacher_online` method, the training step replaces them with
    the mentor's answers to the very views it trains on); `loss` weighs a batch of them in the training loop and
    may report per-batch figures (`stats`, averaged over each epoch and logged)."""

    __pydantic_config__ = {"extra": "forbid"}
    name: ClassVar[str]
    true_labels: ClassVar[bool] = False   # learns from the pool's true labels: the supervised reference only
    teacher_online: ClassVar[bool] = False  # its targets: the mentor's network's answers to each augmented view,
    #                                        asked in the training step (`core/training.py`'s `teacher`)
    stats: ClassVar[tuple[str, ...]] = ()

    def targets(self, probs: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """N×K target rows: by default the mentor's probabilities as they are."""
        return probs

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's loss, and its `stats` as a 1-d tensor (None where it has none)."""
        return F.cross_entropy(logits, targets), None

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def knobs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.knob_names()}

    def key(self) -> list[Any] | None:
        """What a student's cache key holds of its method: its name and knobs, the temperature second (1 for a
        method without one) as in keys written before methods had knobs; None leaves it out (the paper's)."""
        others = {k: v for k, v in self.knobs().items() if k != "temperature"}
        return [self.name, float(self.knobs().get("temperature", 1.0))] + ([others] if others else [])

    def describe(self) -> str:
        """`hinton (temperature=4)`: the name and its knobs, for tables."""
        knobs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.knobs().items())
        return f"{self.name} ({knobs})" if knobs else self.name
