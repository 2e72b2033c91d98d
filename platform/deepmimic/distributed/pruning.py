"""Early stopping for a search of the smallest student keeping a target: successive halving in which a
student competes only with students no bigger than itself.

Written here because Ray Tune's ASHA ranks students by score alone, so at its first rungs it stops the
small students that learn slower than big ones: exactly those this search looks for (on digits, Optuna
with ASHA answered with a 14,826-parameter student where the full grid found one of 838 keeping the same
target). Here a student is stopped at a rung only where a student no bigger than it scored higher at that
rung (it is dominated: bigger and worse), and at once where it is no smaller than a student that already
kept the target in full (it cannot be the answer).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class SmallerFirst(FIFOScheduler):
    """Stop dominated students at rungs `grace`, `grace × reduction`, … below `max_t` epochs (see the module)."""

    def __init__(self, metric: str, cost: str, max_t: int, grace: int, reduction: float, target: float) -> None:
        super().__init__()
        self.score, self.cost, self.max_t, self.target = metric, cost, max_t, target
        self.rungs: list[int] = []
        rung = grace
        while rung < max_t:
            self.rungs.append(rung)
            rung = max(rung + 1, math.ceil(rung * reduction))
        self.recorded: dict[int, list[tuple[float, float]]] = {r: [] for r in self.rungs}  # (cost, score)
        self.passed: dict[str, int] = {}   # each trial's last rung recorded
        self.answer = math.inf             # the smallest cost that kept the target in full
        self.stopped = 0

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.score not in result or "duplicate_of" in result:  # a replay: its scores are recorded already
            return TrialScheduler.CONTINUE
        cost, score, epoch = result[self.cost], result[self.score], result["epoch"]
        dominated = cost >= self.answer
        for rung in self.rungs:
            if epoch >= rung > self.passed.get(trial.trial_id, 0):
                self.passed[trial.trial_id] = rung
                dominated |= any(c <= cost and s > score for c, s in self.recorded[rung])
                self.recorded[rung].append((cost, score))
        self.stopped += dominated
        return TrialScheduler.STOP if dominated else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if result.get("epoch", 0) >= self.max_t and result.get(self.score, -math.inf) >= self.target:
            self.answer = min(self.answer, result[self.cost])

    def debug_string(self) -> str:
        return f"SmallerFirst: {self.stopped} stopped, rungs {self.rungs}, smallest answer {self.answer:g}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
