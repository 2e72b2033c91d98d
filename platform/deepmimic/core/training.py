"""The training loop shared by mentor and student.

Batches come from `batches`: the whole shard on the device as uint8 tensors, drawn
by index (one step: an index gather, a forward, a backward and an update), or a stream.
Targets are either class indices (the mentor's true labels) or probability
rows (the student's soft labels); the loss is an `Objective`'s: a student's method
(`core/methods`), or `CrossEntropy` (a mentor's, smoothed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable, ClassVar, Protocol

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Le, Lt
from torch import nn

from .allocator import keep_freed_memory
from .augment import Augment, strong
from .batches import Batches, InMemory
from .optimizer import SGD
from .step_graph import StepGraph


@dataclass(frozen=True)
class Training:
    """A training run's recipe: the YAML's `training:` section, validated as it is (the bounds are read by the
    config's validator; the core itself needs no pydantic)."""

    __pydantic_config__ = {"extra": "forbid"}

    epochs: Annotated[int, Ge(1), Le(10_000)] = 20
    batch_size: Annotated[int, Ge(1)] = 64
    lr: Annotated[float, Gt(0.0)] = 0.05
    momentum: Annotated[float, Ge(0.0), Lt(1.0)] = 0.9
    weight_decay: Annotated[float, Ge(0.0)] = 5e-4
    shift: Annotated[int, Ge(0), Le(8)] = 0  # augmentation: random translation by up to this many pixels
    flip: bool = False  # augmentation: mirror half the images left to right (not for digits or text)
    label_smoothing: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0  # on class-index targets: a mentor's true labels
    bf16: bool | None = None     # autocast to bfloat16; None: where the device computes it natively
    channels_last: bool = True   # NHWC activations: faster convolutions with oneDNN (CPU) and tensor cores
    compile: bool = False        # torch.compile the model (pays a compile on first use)
    cuda_graph: bool = True      # on a CUDA device (without compile): replay full batches' steps from one CUDA graph
    eval_every: Annotated[int, Ge(1)] | None = None  # test-set evaluation every N epochs (and after the last);
    #                                                  None: about 20 points on the learning curve
    augment: Augment | None = None  # strong augmentation, a draw per image (`core/augment.py`), after shift and flip
    backbone_lr_scale: Annotated[float, Ge(0.0)] = 1.0  # every layer's learning rate but the head's, times this
    freeze_epochs: Annotated[int, Ge(0)] = 0  # epochs at the start in which only the head learns

    @property
    def groups(self) -> bool:
        """Whether the head and the rest of the network learn at different rates."""
        return self.backbone_lr_scale != 1.0 or self.freeze_epochs > 0

    @property
    def evaluation_every(self) -> int:
        return self.eval_every or max(1, self.epochs // 20)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively, so autocasting to it pays:
    bf16-capable GPUs, and CPUs with AVX-512 BF16 or AMX (elsewhere it is emulated, slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch's probes are private: fall back to "no" if they move
        names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        probes = (getattr(torch.cpu, name, lambda: False) for name in names)
        return any(bool(probe()) for probe in probes)
    return False


def random_shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """Translate each image by its own random offset of up to `k` pixels (zero fill), on x's device."""
    b, c, h, w = x.shape
    padded = F.pad(x, (k, k, k, k))
    dy = torch.randint(0, 2 * k + 1, (b, 1), device=x.device) + torch.arange(h, device=x.device)
    dx = torch.randint(0, 2 * k + 1, (b, 1), device=x.device) + torch.arange(w, device=x.device)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, dy[:, None, :, None], dx[:, None, None, :]]


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left to right with probability 1/2, on x's device."""
    mirror = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(mirror, x.flip(3), x)


def augment(x: torch.Tensor, training: Training) -> torch.Tensor:
    """The training-time augmentation `training` asks for (a student's images too: its targets are the
    mentor's soft labels of the unaugmented image, which a shift of a pixel or a mirror leaves valid)."""
    if training.shift:
        x = random_shift(x, training.shift)
    if training.flip:
        x = random_flip(x)
    return strong(x, training.augment) if training.augment is not None else x


def sgd(model: nn.Module, training: Training) -> SGD:
    """The paper's optimiser: SGD, here with Nesterov momentum (the learning rate is set per step); the head (the
    last layer, which gives the logits) apart where the recipe scales or freezes the rest."""
    head = list(head_of(model).parameters()) if training.groups else ()
    return SGD(model.parameters(), lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay,
               head=head)


def head_of(model: nn.Module) -> nn.Module:
    """The layer giving the logits: the network's last linear layer (or 1×1 convolution, as SqueezeNet's)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]


class Objective(Protocol):
    """What a batch's loss is: `loss(logits, targets)` gives it and, as a 1-d tensor, its `stats` (per-batch
    figures averaged over each epoch; None where there are none). A student's method is one (`core/methods`)."""

    stats: tuple[str, ...]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass(frozen=True)
class CrossEntropy:
    """Cross-entropy against class indices (smoothed by `label_smoothing`: a mentor's true labels) or against
    probability rows, used as given."""

    label_smoothing: float = 0.0
    stats: ClassVar[tuple[str, ...]] = ()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, None]:
        smoothing = self.label_smoothing if targets.dtype == torch.long else 0.0
        return F.cross_entropy(logits, targets, label_smoothing=smoothing), None


def train(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, training: Training,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None, start_epoch: int = 0, opt: SGD | None = None,
          *, seed: int = 0, objective: Objective | None = None, teacher: nn.Module | None = None) -> SGD:
    """`train_on` a shard held on the device as tensors."""
    return train_on(model, InMemory(images, targets, training.batch_size), training, on_epoch, start_epoch, opt,
                    seed=seed, objective=objective, teacher=teacher)


def nonfinite(model: nn.Module) -> list[str]:
    """The names of `model`'s parameters and buffers holding a NaN or an infinity: a non-finite gradient in the
    last step leaves every loss of the run finite."""
    return [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]


def train_on(
    model: nn.Module,
    data: Batches,
    training: Training,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    start_epoch: int = 0,
    opt: SGD | None = None,
    *,
    seed: int = 0,
    objective: Objective | None = None,
    teacher: nn.Module | None = None,
) -> SGD:
    """SGD with Nesterov momentum and a cosine learning rate, under `objective`'s loss (default: cross-entropy,
    smoothed as `training.label_smoothing` says).

    `on_epoch(epoch, train)` runs after each epoch (1-based), e.g. to evaluate, report or checkpoint; `train`
    holds the epoch's mean `loss` and the objective's `stats`. Training may resume at `start_epoch` with the
    optimiser `opt` restored from a checkpoint; the batch order stays the same as an uninterrupted run's, since
    it depends only on seed and epoch. `teacher` (a network in eval mode): each step's targets are its
    probabilities for the augmented images the step trains on, not the batch's own (a `teacher_online` method).
    """
    keep_freed_memory()
    objective = objective or CrossEntropy(training.label_smoothing)
    device, steps_per_epoch = data.device, data.steps
    total = steps_per_epoch * training.epochs
    opt = opt or sgd(model, training)
    if training.channels_last:
        model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if training.compile else model
    memory_format = torch.channels_last if training.channels_last else torch.contiguous_format
    bf16 = native_bf16(device) if training.bf16 is None else training.bf16
    # Not under DDP: capturing its all-reduce needs its static graph and more warm-ups (torch's CUDA-graph docs),
    # unmeasured on several GPUs so far.
    # Nor with augmentation (its draws are made on the host), learning-rate groups (their scale changes) or a
    # teacher (not measured).
    graphed = (training.cuda_graph and device.type == "cuda" and not training.compile and not training.groups
               and training.augment is None and teacher is None
               and not isinstance(model, nn.parallel.DistributedDataParallel))
    lr_at = lambda step: 0.5 * training.lr * (1 + math.cos(math.pi * step / total))  # noqa: E731

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = augment(images, training).contiguous(memory_format=memory_format)
        # autocast's cache of cast weights cannot live across graph replays (torch's CUDA-graph docs)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16, cache_enabled=not graphed):
            if teacher is not None:
                with torch.no_grad():
                    targets = teacher(x).float().softmax(1)
            logits = forward(x)
        loss, stats = objective.loss(logits.float(), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach().reshape(1) if stats is None else torch.cat([loss.detach().reshape(1), stats.detach()])

    run = StepGraph(step, training.batch_size) if graphed else step
    if graphed:
        opt.lr = torch.zeros((), device=device)  # a captured step reads its learning rate from here
    for epoch in range(start_epoch, training.epochs):
        torch.manual_seed(seed * 100_003 + epoch)  # dropout, shuffle, augmentation depend only on (seed, epoch)
        model.train()
        opt.backbone_scale = 0.0 if epoch < training.freeze_epochs else training.backbone_lr_scale
        sums = torch.zeros(1 + len(objective.stats), device=device)  # the loss, then the stats
        for i, (images, targets) in enumerate(data.epoch(epoch, seed)):
            lr = lr_at(epoch * steps_per_epoch + i)
            if graphed:
                opt.lr.fill_(lr)
            else:
                opt.lr = lr
            sums += run(images, targets)
        if on_epoch is not None:
            means = [value / steps_per_epoch for value in sums.tolist()]
            on_epoch(epoch + 1, dict(zip(("loss", *objective.stats), means)))
    return opt
