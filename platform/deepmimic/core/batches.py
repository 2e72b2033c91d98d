"""Where a training loop's batches come from: a shard held on the device, or a stream (the Ray layer's)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch


class Batches(Protocol):
    """One epoch of (images, targets) batches at a time, the same `steps` every epoch.

    `epoch(e)` runs just after the loop seeds torch with (seed, e): an order drawn from torch's
    generator, or from that seed, is the same on a resumed run."""

    device: torch.device
    steps: int

    def epoch(self, epoch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class InMemory:
    """The whole shard as device tensors; a batch is an index gather of a random permutation."""

    images: torch.Tensor
    targets: torch.Tensor
    batch_size: int

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def steps(self) -> int:
        return max(1, math.ceil(len(self.images) / self.batch_size))  # the last batch may be smaller

    def epoch(self, epoch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.images)).to(self.device)
        for step in range(self.steps):
            idx = perm[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.images[idx], self.targets[idx]
