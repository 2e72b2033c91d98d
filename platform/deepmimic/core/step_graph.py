"""A training step captured once as a CUDA graph and replayed for every full batch."""

from __future__ import annotations

from typing import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StepGraph:
    """Runs `step(images, targets) -> loss` on a CUDA device: a few eager steps, then one capture, then a replay
    of the captured kernels for each full batch (copied into the graph's own input tensors first).

    A small model's step is a few hundred kernel launches of microseconds' work each, so the GPU waits on Python
    (benchmarks/RESULTS.md: the H100 run). Written here
    because `torch.cuda.make_graphed_callables` graphs the model alone (the augmentation, loss and optimiser
    would still launch one by one), and `torch.compile(mode="reduce-overhead")` first compiles for longer than
    most of these trainings run.

    `step` must read whatever changes between steps from tensors (the learning rate too: a 0-d tensor filled in
    place), and must not synchronise with the host. A batch of another size (an epoch's last) runs eagerly. The
    loss returned is valid until the next call.
    """

    WARM_UPS = 3  # eager steps on a side stream before the capture, as torch's CUDA-graph docs ask (library set-up)

    def __init__(self, step: Step, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        self.warmed = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stream = torch.cuda.Stream()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if len(images) != self.batch_size:
            return self.step(images, targets)
        if self.warmed < self.WARM_UPS:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                loss = self.step(images, targets)
            torch.cuda.current_stream().wait_stream(self.stream)
            self.warmed += 1
            return loss
        if self.graph is None:
            self.images, self.targets = images.clone(), targets.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records the kernels without running them: replayed below
                self.loss = self.step(self.images, self.targets)
        else:
            self.images.copy_(images)
            self.targets.copy_(targets)
        self.graph.replay()
        return self.loss
