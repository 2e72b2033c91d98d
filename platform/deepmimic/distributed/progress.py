"""What a training run tells the sweep's tracker as it trains: its start, each epoch, its end.

Fire-and-forget calls on the tracker's Ray actor (`tracking.Tracker`), from whichever process trains
(a Tune trial's, a Ray Train worker on any node): training never waits for MLflow, and Ray delivers
each caller's calls in order. A call that cannot be made costs the run nothing: the driver logs every
run's whole history again once it finishes, and the tracker skips the epochs it has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..core.results import Epoch
from ..run_names import RunLabel


@dataclass(frozen=True)
class Progress:
    tracker: Any       # a Ray actor handle on `tracking.Tracker`
    label: RunLabel    # the run's name, params and tags: the tracker opens the run with them

    def started(self, history: list[Epoch]) -> None:
        self._tell("started", self.label, _ms(), list(history))

    def epoch(self, epoch: Epoch) -> None:
        self._tell("epochs", self.label.key, [epoch], _ms())

    def ended(self) -> None:
        self._tell("ended", self.label.key, _ms())

    def _tell(self, method: str, *args: Any) -> None:
        try:
            getattr(self.tracker, method).remote(*args)
        except Exception:  # noqa: BLE001 (a tracker gone must not stop training: see the module's docstring)
            pass


def _ms() -> int:
    return int(time.time() * 1000)
