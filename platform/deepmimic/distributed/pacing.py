"""A pace for Ray Data's scheduling loop in a training process.

Its own module, importing no PyTorch: Ray Data ships its context, callback classes included, to every read
task, whose worker then imports the module that defines them.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ray.data._internal.execution.execution_callback import ExecutionCallback

AT_ONCE_S = 0.002  # a step that came back within this had nothing to wait on
PAUSE_S = 0.02     # a row group's read takes about half of it; a block feeds far longer a training


class Paced(ExecutionCallback):
    """Ray Data's scheduling loop (a thread of the training process) blocks on its running tasks, but while a
    read-ahead bound holds every read back it has none and spins, taking the GIL from the training step
    (benchmarks/RESULTS.md, streaming). A step of the loop that came back at once sleeps. Ray Data takes such
    callbacks as classes (`DataContext.custom_execution_callback_classes`) and makes them without arguments."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock, self.sleep = clock, sleep
        self.last = clock()

    def on_execution_step(self, executor: Any) -> None:
        now = self.clock()
        if now - self.last < AT_ONCE_S:
            self.sleep(PAUSE_S)
            now = self.clock()
        self.last = now
