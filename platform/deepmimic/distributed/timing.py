"""Seconds spent per named stage: the one timing helper of the driver, the mentor stage and `deepmimic run`."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


class Stopwatch:
    """Adds each timed stage's seconds to `times` (a stage timed twice counts both), in the order first timed."""

    def __init__(self, times: dict[str, float] | None = None) -> None:
        self.times = {} if times is None else times

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = round(self.times.get(stage, 0.0) + time.perf_counter() - start, 3)
