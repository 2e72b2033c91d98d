"""Strong augmentation from a library made for it: kornia's RandAugment and TrivialAugment, batched with a
random draw per image, on the device where training runs.

kornia, not torchvision's v2 transforms: those draw one operation for a whole batch, and a loop over its
images ran about 5× slower than kornia's batch on this project's CPU (benchmarks/RESULTS.md). kornia's colour
operations take three channels: grey images are given as three equal channels and averaged back. Imported
where a recipe asks for augmentation, not before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from annotated_types import Ge, Le


@dataclass(frozen=True)
class Augment:
    """`training.augment`: a named policy; RandAugment's `ops` per image at `magnitude` (of kornia's 30)."""

    __pydantic_config__ = {"extra": "forbid"}

    policy: Literal["randaugment", "trivialaugment"]
    ops: Annotated[int, Ge(1), Le(6)] = 2
    magnitude: Annotated[int, Ge(0), Le(30)] = 9


@functools.lru_cache(maxsize=8)
def _policy(augment: Augment) -> Any:
    from kornia.augmentation.auto import RandAugment, TrivialAugment

    return RandAugment(n=augment.ops, m=augment.magnitude) if augment.policy == "randaugment" else TrivialAugment()


def strong(images: torch.Tensor, augment: Augment) -> torch.Tensor:
    """`images` (uint8-range, N×C×H×W) augmented, each by its own draw; float, in the same range."""
    x = images.float() / 255.0
    grey = x.shape[1] == 1
    out = _policy(augment)(x.expand(-1, 3, -1, -1) if grey else x)
    return (out.mean(1, keepdim=True) if grey else out).clamp(0.0, 1.0) * 255.0
