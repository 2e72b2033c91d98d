"""DeepMimic on the pool images the mentor is sure of: the rest are left out of the loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from annotated_types import Gt, Lt

from .base import Method


@dataclass(frozen=True)
class Confident(Method):
    """An image whose soft label's top probability is below `threshold` adds nothing to the loss, which is
    divided by the whole batch's size, as FixMatch's unlabelled term is (a batch that keeps nothing adds zero).
    The fraction of images kept is reported per epoch (`kept_fraction`)."""

    name = "confident"
    stats = ("kept_fraction",)
    threshold: Annotated[float, Gt(0.0), Lt(1.0)] = 0.95

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = (targets.max(1).values >= self.threshold).float()
        per_image = F.cross_entropy(logits, targets, reduction="none")
        return (per_image * kept).sum() / len(logits), kept.mean().reshape(1)
