"""Which pool images to ask a mentor about when each answer is paid for: a budget spent in rounds, each round's
images chosen by a selection strategy from a selector network's view of the images not yet asked.

The strategies are those model-extraction work compares (ActiveThief, Pal et al. 2020; Knockoff Nets' random
baseline, Orekondy et al. 2019): `random`; the selector's uncertainty (`entropy`, `margin`); diversity in its
penultimate features (`kcenter`, greedy farthest-first from everything asked so far); and uncertainty first, then
diversity among the most uncertain (`entropy_kcenter`). A strategy is one class here and one line in
`STRATEGIES`. Entropy and margin are a line each; greedy k-center, the longest, is a loop over `torch.cdist`:
written here rather than bring an active-learning framework (modAL, baal) built around its own model wrappers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .evaluation import predict_logits

# entropy_kcenter's uncertain shortlist: this many times the round's share, k-center then picks among them
SHORTLIST = 4


@dataclass(frozen=True)
class View:
    """What the selector sees: its probabilities and features for the candidates (the pool images not yet asked,
    in the seed's random order) and its features for the images already asked."""

    probabilities: np.ndarray   # N×K
    features: np.ndarray        # N×D
    asked_features: np.ndarray  # M×D


class Strategy(ABC):
    """A way of choosing the next `k` candidates."""

    name: ClassVar[str]
    needs_selector: ClassVar[bool] = True   # False: chooses without a view (no selector trained for it)

    @abstractmethod
    def choose(self, view: View | None, k: int) -> np.ndarray:
        """Indices of `k` distinct candidates."""


class Random(Strategy):
    """The next `k` of the seed's random order: candidates come in it."""

    name = "random"
    needs_selector = False

    def choose(self, view: View | None, k: int) -> np.ndarray:
        return np.arange(k)


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """The `k` highest scores, ties to the earlier candidate (the random order)."""
    return np.argsort(-score, kind="stable")[:k]


def entropy(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


class Entropy(Strategy):
    name = "entropy"

    def choose(self, view: View | None, k: int) -> np.ndarray:
        assert view is not None
        return _top(entropy(view.probabilities), k)


class Margin(Strategy):
    """The smallest gap between the selector's two likeliest classes."""

    name = "margin"

    def choose(self, view: View | None, k: int) -> np.ndarray:
        assert view is not None
        two = np.sort(view.probabilities, axis=1)[:, -2:]
        return _top(two[:, 0] - two[:, 1], k)


def k_center(features: np.ndarray, centers: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-center (Sener & Savarese 2018): `k` rows of `features`, each the farthest (Euclidean) from
    `centers` and the rows picked before it."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nearest = torch.full((len(x),), float("inf"))
    for i in range(0, len(centers), 1024):  # chunks: N × M distances at once could not fit
        c = torch.from_numpy(np.ascontiguousarray(centers[i : i + 1024], dtype=np.float32))
        nearest = torch.minimum(nearest, torch.cdist(x, c).min(1).values)
    picked = []
    for _ in range(min(k, len(x))):
        i = int(torch.argmax(nearest))
        picked.append(i)
        nearest = torch.minimum(nearest, torch.cdist(x, x[i : i + 1]).squeeze(1))
        nearest[i] = -1.0  # never again, even where features repeat
    return np.asarray(picked, dtype=np.int64)


class KCenter(Strategy):
    name = "kcenter"

    def choose(self, view: View | None, k: int) -> np.ndarray:
        assert view is not None
        return k_center(view.features, view.asked_features, k)


class EntropyKCenter(Strategy):
    """ActiveThief's best recipe in spirit: a shortlist of the most uncertain, then the most diverse of those."""

    name = "entropy_kcenter"

    def choose(self, view: View | None, k: int) -> np.ndarray:
        assert view is not None
        shortlist = _top(entropy(view.probabilities), SHORTLIST * k)
        return shortlist[k_center(view.features[shortlist], view.asked_features, k)]


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Random, Entropy, Margin, KCenter, EntropyKCenter)}


def round_sizes(budget: int, rounds: int, seed_fraction: float) -> list[int]:
    """Images asked in each round: the first (chosen at random) `seed_fraction` of the budget, the rest spread
    evenly over the other rounds. One round where the budget is too small to split."""
    seed = max(1, round(seed_fraction * budget))
    if rounds == 1 or seed >= budget:
        return [budget]
    rest = [len(part) for part in np.array_split(np.arange(budget - seed), rounds - 1)]
    return [seed, *(n for n in rest if n)]


def scores(model: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s probabilities for uint8 `images` and its penultimate features (the input of its last linear
    layer; its logits where it has none)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen: list[torch.Tensor] = []
    hook = last[-1].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].flatten(1).float())) \
        if last else None
    try:
        logits = predict_logits(model, images)
    finally:
        if hook is not None:
            hook.remove()
    features = torch.cat(seen) if seen else logits
    return torch.softmax(logits, 1).cpu().numpy(), features.cpu().numpy()
