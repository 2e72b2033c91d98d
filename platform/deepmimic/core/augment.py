"""Strong augmentation from a library made for it: kornia's RandAugment and TrivialAugment operations, on the
device where training runs, with a draw per image.

kornia's policies draw their operations once per call (a batch); RandAugment and TrivialAugment as published
draw them per image. So each operation of kornia's policy is one single-candidate kornia policy here, and each
image goes through the ones it drew (RandAugment: `ops` draws, with replacement, as torchvision's; TrivialAugment:
one, its magnitude drawn by kornia per image). That dispatch is the only part written here: no well-kept library
draws per image on a batch tensor (torchvision's v2 transforms draw per call too, and a loop over images ran
slower: benchmarks/augment.py). kornia's colour operations take three channels: grey images are given as three
equal channels and averaged back. kornia is imported where a recipe asks for augmentation, not before.
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
    ops: Annotated[int, Ge(1), Le(6)] = 2  # RandAugment's; TrivialAugment applies one
    magnitude: Annotated[int, Ge(1), Le(29)] = 9  # RandAugment's (kornia takes 1 to 29); TrivialAugment draws it


@functools.lru_cache(maxsize=8)
def _operations(augment: Augment) -> tuple[list[Any], int]:
    """kornia's operations of the policy, each a policy of one candidate; how many each image draws."""
    from kornia.augmentation.auto import RandAugment, TrivialAugment
    from kornia.augmentation.auto.rand_augment.rand_augment import default_policy as rand_policy
    from kornia.augmentation.auto.trivial_augment.trivial_augment import default_policy as trivial_policy

    if augment.policy == "randaugment":
        return [RandAugment(n=1, m=augment.magnitude, policy=[op]) for op in rand_policy], augment.ops
    return [TrivialAugment(policy=[op]) for op in trivial_policy], 1


def strong(images: torch.Tensor, augment: Augment) -> torch.Tensor:
    """`images` (uint8-range, N×C×H×W) augmented, each by its own draw; float, in the same range."""
    operations, draws = _operations(augment)
    x = images.float() / 255.0
    grey = x.shape[1] == 1
    if grey:
        x = x.expand(-1, 3, -1, -1)
    for _ in range(draws):
        chosen = torch.randint(len(operations), (len(x),), device=x.device)
        out = torch.empty_like(x)
        for k in chosen.unique().tolist():
            where = (chosen == k).nonzero().squeeze(1)
            out[where] = operations[k](x[where])
        x = out
    return (x.mean(1, keepdim=True) if grey else x).clamp(0.0, 1.0) * 255.0
