"""The training loop shared by mentor and student.

Batches come from `batches`: the whole shard on the device as uint8 tensors, drawn
by index (one step: an index gather, a forward, a backward and an update), or a stream.
Targets are either class indices (the mentor's true labels) or probability
rows (the student's soft labels): `F.cross_entropy` takes both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Le, Lt
from torch import nn

from .allocator import keep_freed_memory
from .batches import Batches, InMemory
from .optimizer import SGD
from .step_graph import StepGraph


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings of one training run: the YAML's `training:` section, validated as it is
    (the bounds are read by the config's validator; the core itself needs no pydantic)."""

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


def augment(x: torch.Tensor, hyper: Hyper) -> torch.Tensor:
    """The training-time augmentation `hyper` asks for (a student's images too: its targets are the
    mentor's soft labels of the unaugmented image, which a shift of a pixel or a mirror leaves valid)."""
    if hyper.shift:
        x = random_shift(x, hyper.shift)
    return random_flip(x) if hyper.flip else x


def sgd(model: nn.Module, hyper: Hyper) -> SGD:
    """The paper's optimiser: SGD, here with Nesterov momentum (the learning rate is set per step)."""
    return SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against class indices or probabilities; at temperature T the logits are
    divided by T and the loss multiplied by T, so its gradient is softmax(z/T) − q, the scale of T=1's.

    Hinton et al. multiply by T² to balance a hard-label term; with the soft term alone that
    multiplies every step by T (at T=4 and lr 0.05: NaN in the first epoch on Fashion-MNIST).
    `label_smoothing` applies to class indices only: probability targets are used as given.
    """
    smoothing = label_smoothing if targets.dtype == torch.long else 0.0
    return F.cross_entropy(logits / temperature, targets, label_smoothing=smoothing) * temperature


def train(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, hyper: Hyper,
          on_epoch: Callable[[int, float], None] | None = None, start_epoch: int = 0, opt: SGD | None = None,
          *, seed: int = 0, temperature: float = 1.0) -> SGD:
    """`train_on` a shard held on the device as tensors."""
    return train_on(model, InMemory(images, targets, hyper.batch_size), hyper, on_epoch, start_epoch, opt,
                    seed=seed, temperature=temperature)


def train_on(
    model: nn.Module,
    data: Batches,
    hyper: Hyper,
    on_epoch: Callable[[int, float], None] | None = None,
    start_epoch: int = 0,
    opt: SGD | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
) -> SGD:
    """SGD with Nesterov momentum and a cosine learning rate, cross-entropy loss.

    `on_epoch(epoch, mean_train_loss)` runs after each epoch (1-based), e.g. to
    evaluate, report or checkpoint. Training may resume at `start_epoch` with
    the optimiser `opt` restored from a checkpoint; the batch order stays
    the same as an uninterrupted run's, since it depends only on seed and epoch.
    `temperature`: Hinton's (see `cross_entropy`); 1 for every other method.
    """
    keep_freed_memory()
    device, steps_per_epoch = data.device, data.steps
    total = steps_per_epoch * hyper.epochs
    opt = opt or sgd(model, hyper)
    if hyper.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if hyper.compile else model
    memory_format = torch.channels_last if hyper.channels_last else torch.contiguous_format
    bf16 = native_bf16(device) if hyper.bf16 is None else hyper.bf16
    # Not under DDP: capturing its all-reduce needs its static graph and more warm-ups (torch's CUDA-graph docs),
    # unmeasured on several GPUs so far.
    graphed = (hyper.cuda_graph and device.type == "cuda" and not hyper.compile
               and not isinstance(model, nn.parallel.DistributedDataParallel))
    lr_at = lambda step: 0.5 * hyper.lr * (1 + math.cos(math.pi * step / total))  # noqa: E731

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = augment(images, hyper)
        # autocast's cache of cast weights cannot live across graph replays (torch's CUDA-graph docs)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16, cache_enabled=not graphed):
            logits = forward(x.contiguous(memory_format=memory_format))
        loss = cross_entropy(logits.float(), targets, temperature, hyper.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    run = StepGraph(step, hyper.batch_size) if graphed else step
    if graphed:
        opt.lr = torch.zeros((), device=device)  # a captured step reads its learning rate from here
    for epoch in range(start_epoch, hyper.epochs):
        torch.manual_seed(seed * 100_003 + epoch)  # dropout and shuffle depend only on (seed, epoch)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for i, (images, targets) in enumerate(data.epoch(epoch, seed)):
            lr = lr_at(epoch * steps_per_epoch + i)
            if graphed:
                opt.lr.fill_(lr)
            else:
                opt.lr = lr
            loss_sum += run(images, targets)
        if on_epoch is not None:
            on_epoch(epoch + 1, loss_sum.item() / steps_per_epoch)
    return opt
