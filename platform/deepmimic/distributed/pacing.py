"""A pace for Ray Data's scheduling loop in a training process.

Its own module, importing no PyTorch: Ray Data ships its context, callback classes included, to every read
task, whose worker then imports the module that defines them.
"""

from __future__ import annotations

import time
from typing import Any

from ray.data._internal.execution.execution_callback import ExecutionCallback


class Paced(ExecutionCallback):
    """Ray Data's scheduling loop (a thread of the training process) blocks on its running tasks, but while a
    read-ahead bound holds every read back it has none and spins, taking the GIL from the training step: at
    16× a 256 MiB bound cost 1.7 ms of each 8.5 ms step. A step of the loop that came back at once sleeps.
    Ray Data takes such callbacks as classes (`DataContext.custom_execution_callback_classes`)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def on_execution_step(self, executor: Any) -> None:
        now = time.perf_counter()
        if now - self.last < 0.002:
            time.sleep(0.02)  # reads of a row group take about 10 ms; a block feeds about 0.3 s of training
            now = time.perf_counter()
        self.last = now
