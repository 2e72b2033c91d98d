"""Hinton et al.'s distillation: soft labels at a temperature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Gt

from .base import Method


@dataclass(frozen=True)
class Hinton(Method):
    """Targets p^(1/T) renormalised, which is softmax(logits / T); the student's logits divided by T and the loss
    multiplied by T, so its gradient is softmax(z/T) − q, the scale of T=1's.

    Hinton et al. multiply by T² to balance a hard-label term; with the soft term alone that multiplies every
    step by T (at T=4 and lr 0.05: NaN in the first epoch on Fashion-MNIST)."""

    name = "hinton"
    temperature: Annotated[float, Gt(0.0)] = 4.0

    def targets(self, probs: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        q = probs.astype(np.float64) ** (1.0 / self.temperature)
        return q / q.sum(1, keepdims=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.cross_entropy(logits / self.temperature, targets) * self.temperature, None
