"""A training's calls reach the sweep's tracker even when the tracker is still starting as the training ends."""

from __future__ import annotations

import time

from deepmimic.core.results import Epoch
from deepmimic.distributed.progress import Progress
from deepmimic.run_names import RunLabel


class SlowTracker:
    """Records what it is told; starts as slowly as MLflow's imports and store set-up make the real one."""

    def __init__(self) -> None:
        time.sleep(3)
        self.told: list[str] = []

    def where(self) -> str:
        return "here"

    def started(self, label: RunLabel, start_ms: int, history: list) -> None:
        self.told.append(f"started {label.key}")

    def epochs(self, key: str, history: list) -> None:
        self.told.append(f"epoch {key}")

    def seen(self) -> list[str]:
        return sorted(self.told)


def test_a_short_training_told_a_starting_tracker_everything(ray_local):
    """Ray 2.60 drops calls a task made to an actor still starting once that task ends: each of the first short
    trainings of a sweep lost all its live epochs. Each waits, at its end, for the tracker to be up."""
    ray = ray_local
    tracker = ray.remote(SlowTracker).options(num_cpus=0).remote()
    ready = (tracker.where.remote(),)

    @ray.remote(num_cpus=0.25)
    def train(i: int) -> None:
        progress = Progress(tracker, RunLabel(f"mentor:{i}", "mentor", f"M{i}"), ready)
        progress.started([])
        progress.epoch(Epoch(1, 1.0))
        progress.ended()

    ray.get([train.remote(i) for i in range(4)])
    told = ray.get(tracker.seen.remote())
    assert told == sorted(f"{what} mentor:{i}" for i in range(4) for what in ("started", "epoch"))
