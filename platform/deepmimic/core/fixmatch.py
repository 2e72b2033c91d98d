"""FixMatch (Sohn et al. 2020): a mentor that learns from its labelled images and the unlabelled pool together.

Each step takes `batch_size` labelled images and `mu` times as many pool images. The labelled ones and one copy
of the pool's get the weak augmentation (the recipe's `shift` and `flip`); a second copy of the pool's gets the
strong one on top (`strong`, RandAugment by default). The weak view's prediction, where its top probability reaches
`threshold`, is the strong view's hard target; the loss is the labelled cross-entropy plus `weight` times the pool's,
divided by all the pool's images of the batch (as the paper's). One forward pass over the three parts, as the
paper's PyTorch reference does, so batch norm sees them together. No EMA of the weights is kept (the paper
evaluates one); each part is a batch of `batches.Batches` for the core loop, and the loss an `Objective`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Iterator

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Le, Lt

from .augment import Augment, strong
from .training import random_flip, random_shift


@dataclass(frozen=True)
class FixMatch:
    """A FixMatch mentor's knobs (the paper's defaults); `steps`, where given, sets its training's length."""

    __pydantic_config__ = {"extra": "forbid"}

    threshold: Annotated[float, Gt(0.0), Lt(1.0)] = 0.95
    mu: Annotated[int, Ge(1), Le(64)] = 7
    weight: Annotated[float, Ge(0.0)] = 1.0
    steps: Annotated[int, Ge(1)] | None = None
    strong: Augment = Augment("randaugment")

    def epochs(self, pool: int, batch_size: int, epochs: int) -> int:
        """Epochs (passes over the pool, `mu` × `batch_size` a step) making `steps`; `epochs` where none set."""
        return epochs if self.steps is None else max(1, math.ceil(self.steps / steps_per_epoch(pool, batch_size,
                                                                                              self.mu)))


def steps_per_epoch(pool: int, batch_size: int, mu: int) -> int:
    """Full steps in one pass over the pool (the last, partial batch left out: every step has the same parts)."""
    return max(1, pool // (mu * batch_size))


@dataclass(frozen=True)
class FixMatchLoss:
    """The labelled images' cross-entropy plus `weight` × the confident pool images' against their weak view's
    class; the targets are the labelled images' classes, the logits theirs then the pool's weak then strong."""

    threshold: float
    weight: float
    stats: ClassVar[tuple[str, ...]] = ("kept_fraction", "unlabelled_loss")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labelled = len(targets)
        weak, strong_ = logits[labelled:].chunk(2)
        confidence, pseudo = torch.softmax(weak.detach(), 1).max(1)
        kept = (confidence >= self.threshold).float()
        unlabelled = (F.cross_entropy(strong_, pseudo, reduction="none") * kept).mean()
        loss = F.cross_entropy(logits[:labelled], targets) + self.weight * unlabelled
        return loss, torch.stack([kept.mean(), unlabelled.detach()])


@dataclass
class FixMatchBatches:
    """Labelled images and classes and the pool's images on the device; a batch is the three parts, augmented,
    as float images in uint8's range. An epoch is one pass over the pool; the labelled images are drawn again as
    often as it takes."""

    images: torch.Tensor
    labels: torch.Tensor
    pool: torch.Tensor
    batch_size: int
    fixmatch: FixMatch
    shift: int = 0
    flip: bool = False

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def steps(self) -> int:
        return steps_per_epoch(len(self.pool), self.batch_size, self.fixmatch.mu)

    def _weak(self, x: torch.Tensor) -> torch.Tensor:
        x = random_shift(x, self.shift) if self.shift else x
        return random_flip(x) if self.flip else x

    def epoch(self, epoch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b, u = self.batch_size, self.batch_size * self.fixmatch.mu
        pool_order = torch.randperm(len(self.pool)).to(self.device)
        repeats = math.ceil(self.steps * b / len(self.images))
        order = torch.cat([torch.randperm(len(self.images)) for _ in range(repeats)]).to(self.device)
        for step in range(self.steps):
            idx = order[step * b:(step + 1) * b]
            weak = self._weak(self.pool[pool_order[step * u:(step + 1) * u]])
            parts = (self._weak(self.images[idx]).float(), weak.float(), strong(weak, self.fixmatch.strong))
            yield torch.cat(parts), self.labels[idx]
