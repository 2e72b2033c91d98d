"""The pieces of a search for the smallest student that keep no Ray in them: students drawn from a small
grammar in the paper's notation, their latency, the Pareto front and the winner."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .results import Json


def architecture(conv_blocks: int, convs_per_block: int, fc: int, batch_norm: bool) -> str:
    """The paper's notation for `conv_blocks` blocks of `convs_per_block` 3×3 convolutions (each followed by
    batch norm if `batch_norm`) and a 2×2 max pooling, then `fc` hidden fully connected layers and the
    classifier: (1, 1, 1, False) is `c-mp-fc2`, the paper's shallow student; (2, 2, 0, True) is
    `(c-bn)2-mp-(c-bn)2-mp-fc`."""
    conv = "c-bn" if batch_norm else "c"
    if convs_per_block > 1:
        conv = f"({conv}){convs_per_block}" if batch_norm else f"c{convs_per_block}"
    return "-".join([f"{conv}-mp"] * conv_blocks + ["fc" + (str(fc + 1) if fc else "")])


def latency_ms(model: nn.Module, shape: tuple[int, int, int], batch: int, device: torch.device | str = "cpu",
               repeats: int = 20) -> float:
    """Median milliseconds for `model` to classify one batch of `batch` random images of `shape` on `device`
    (eval mode, after two warm-up passes): what a caller waits, batch 1 for one request, 256 for throughput."""
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= 2:
                times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


@dataclass(frozen=True)
class Candidate:
    """One student the search tried: its size, speed and how close it came to its mentor (on the
    validation slice: the test set is never looked at to choose)."""

    trial: str
    architecture: str
    width: int
    params: int
    latency_ms_1: float
    latency_ms_256: float
    epochs: int                         # trained before it finished or the scheduler stopped it
    validation_relative: float          # its validation score over the mentor's
    stopped_early: bool
    duplicate_of: str | None = None     # drawn again after `duplicate_of` trained it in full: not retrained

    def cost(self, objective: str) -> float:
        return float(self.params) if objective == "params" else self.latency_ms_1


def pareto_front(candidates: Sequence[Candidate], objective: str) -> list[Candidate]:
    """The candidates no other beats on both cost (lower) and validation score (higher), cheapest first; among
    those trained in full where there are any (a student stopped early was scored after fewer epochs)."""
    front: list[Candidate] = []
    full = [c for c in candidates if not c.stopped_early and not c.duplicate_of] or list(candidates)
    for c in sorted(full, key=lambda c: (c.cost(objective), -c.validation_relative)):
        if not front or c.validation_relative > front[-1].validation_relative:
            front.append(c)
    return front


def winner(candidates: Sequence[Candidate], objective: str, target: float) -> tuple[Candidate, bool]:
    """The cheapest candidate whose validation score reaches `target` (ties: the better score), and True;
    where none does, the best-scoring one (ties: the cheaper), and False."""
    candidates = [c for c in candidates if not c.duplicate_of]
    meeting = [c for c in candidates if c.validation_relative >= target]
    if meeting:
        return min(meeting, key=lambda c: (c.cost(objective), -c.validation_relative)), True
    return min(candidates, key=lambda c: (-c.validation_relative, c.cost(objective))), False


@dataclass(frozen=True)
class MentorFigures:
    """The mentor beside which a search's students are judged."""

    name: str
    architecture: str
    params: int | None
    latency_ms_1: float | None          # None: a black box, whose latency is its server's
    latency_ms_256: float | None
    validation_accuracy: float          # on the validation slice (1.0 where students are scored on agreement)


@dataclass(frozen=True)
class SearchSummary(Json):
    """A sweep folder's `search.json`: every student a search tried, and its answer."""

    student: str                        # the name the answer is trained and registered under
    objective: str                      # params or latency
    target_relative: float
    selection: str                      # labels or agreement
    algorithm: str
    scheduler: str
    mentor: MentorFigures
    candidates: tuple[Candidate, ...]
    winner: str                         # its trial
    met: bool                           # the winner reached the target (else: the best found)
    epochs: int                         # a full training's
    space_size: int                     # distinct students in the space: a full grid trains each

    @property
    def best(self) -> Candidate:
        return next(c for c in self.candidates if c.trial == self.winner)

    @property
    def epochs_spent(self) -> int:
        return sum(c.epochs for c in self.candidates if not c.duplicate_of)
