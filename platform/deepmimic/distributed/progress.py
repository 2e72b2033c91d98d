"""What a training run tells the sweep's tracker as it trains: its start and its epochs.

Fire-and-forget calls on the tracker's Ray actor (`tracking.Tracker`), from whichever process trains
(a Tune trial's, a Ray Train worker on any node): training never waits for MLflow, and Ray delivers
each caller's calls in order. Epochs go at most one call a second (`EPOCHS_EVERY_S`, each call a write to
the store: a sweep of many short runs would otherwise pay a call an epoch), the last with the run's end.
A call that cannot be made costs the run nothing: the driver logs every run's whole history again once
it finishes, and the tracker skips the epochs it has.

One wait: calls made to an actor that is still starting are lost if the task that made them ends
before the actor is up (seen with Ray 2.60: a sweep's first, short mentor trials lost every live epoch,
and their runs were then logged after the fact). So a run's end waits, bounded, for the tracker's start,
which the driver began before the first trial: `ready` holds that call's reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray

from ..core.results import Epoch
from ..run_names import RunLabel

STARTS_WITHIN_S = 60.0  # a tracker not up by then is left to the driver's logging after the fact
EPOCHS_EVERY_S = 1.0


@dataclass
class Progress:
    tracker: Any       # a Ray actor handle on `tracking.Tracker`
    label: RunLabel    # the run's name, params and tags: the tracker opens the run with them
    ready: tuple[Any, ...] = ()  # the reference of a call the driver made first (in a tuple: Ray leaves it be)
    unsent: list[Epoch] = field(default_factory=list)
    sent_at: float = 0.0

    def started(self, history: list[Epoch]) -> None:
        self._tell("started", self.label, _ms(), list(history))
        self.sent_at = time.monotonic()

    def epoch(self, epoch: Epoch) -> None:
        self.unsent.append(epoch)
        if time.monotonic() - self.sent_at >= EPOCHS_EVERY_S:
            self._send_epochs()

    def ended(self) -> None:
        """The run's last epochs; its end is the tracker's to mark, from the result the trial logs next (one
        call and one store write less a run)."""
        self._send_epochs()
        if self.ready:
            ray.wait(list(self.ready), timeout=STARTS_WITHIN_S, fetch_local=False)

    def _send_epochs(self) -> None:
        if self.unsent:
            self._tell("epochs", self.label.key, self.unsent)
            self.unsent, self.sent_at = [], time.monotonic()

    def _tell(self, method: str, *args: Any) -> None:
        try:
            getattr(self.tracker, method).remote(*args)
        except Exception:  # noqa: BLE001 (a tracker gone must not stop training: see the module's docstring)
            pass


def _ms() -> int:
    return int(time.time() * 1000)
