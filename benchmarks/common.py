"""What every benchmark shares: the machine's description, Fashion-MNIST split
as the paper splits it, the plain PyTorch baseline loop, and table printing.

Benchmarks import the pure core only (no Ray) unless they measure Ray itself,
so they also run on a GPU machine that has PyTorch and nothing else.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "platform"))

from deepmimic.core.architectures import ModelSpec, channel_stats  # noqa: E402
from deepmimic.core.datasets import load_dataset  # noqa: E402
from deepmimic.core.evaluation import accuracy_and_loss, inference_time, predict_logits  # noqa: E402
from deepmimic.core.splits import stratified_split  # noqa: E402
from deepmimic.core.training import Training, train  # noqa: E402

# Debian's files, or a copy named by DEEPMIMIC_FASHION_ROOT (a GPU machine without the package).
FASHION = os.environ.get("DEEPMIMIC_FASHION_ROOT", "/usr/share/datasets/fashion-mnist")
# Table 1's MNIST architectures, as in search_spaces/fashion_mnist_table1.yaml.
TABLE1 = {"Mentor": "c-mp-c-mp-fc2", "Student-A": "c-mp-c-mp-fc2", "Student-B": "c-mp-fc2"}


def machine(device: torch.device) -> str:
    """One line naming the machine, so a table can be matched to where it ran."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {cpu}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}, device {device}")


@dataclass
class Split:
    mentor_x: torch.Tensor  # uint8 N×1×28×28
    mentor_y: torch.Tensor
    pool_x: torch.Tensor    # the student pool; its labels are never used for training
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: list[float]
    std: list[float]


def fashion_split(ratio: float = 0.2, seed: int = 0) -> Split:
    """Fashion-MNIST split 20/80 (stratified) like the platform's experiments."""
    data = load_dataset("fashion_mnist", FASHION)
    s = stratified_split(data.train.labels, ratio, seed)
    mean, std = channel_stats(data.train.images[s.mentor])
    t = torch.from_numpy
    return Split(t(data.train.images[s.mentor]), t(data.train.labels[s.mentor]), t(data.train.images[s.student]),
                 t(data.test.images), t(data.test.labels), mean, std)


def build(architecture: str, shape: tuple[int, int, int], num_classes: int, mean: list[float], std: list[float],
          seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ModelSpec(architecture).build(shape, num_classes, mean, std)


def plain_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hyper: Training, device: torch.device,
                on_epoch: Callable[[int, float], None] | None = None, seed: int = 0) -> None:
    """The baseline a practitioner writes first: TensorDataset + DataLoader(shuffle=True),
    the same SGD (Nesterov), cosine schedule and cross-entropy as the core loop."""
    loader = DataLoader(TensorDataset(x, y), batch_size=hyper.batch_size, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                          weight_decay=hyper.weight_decay, nesterov=hyper.momentum > 0)
    total = len(loader) * hyper.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    torch.manual_seed(seed)
    model.train()
    for epoch in range(hyper.epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, loss.item())


@torch.no_grad()
def plain_predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 128) -> torch.Tensor:
    """The baseline's inference: DataLoader batches in eval mode, softmax per batch."""
    model.eval()
    loader = DataLoader(TensorDataset(x), batch_size)
    return torch.cat([torch.softmax(model(xb.to(device)), 1).cpu() for (xb,) in loader])


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of `fn()`, waiting for the GPU to finish where there is one."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


class EpochClock:
    """Per-epoch wall times from an `on_epoch` callback; the median resists a noisy
    (shared, virtual) machine better than the total."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.times: list[float] = []
        self.last = time.perf_counter()

    def __call__(self, epoch: int, _: object) -> None:  # the loss, or the core loop's epoch figures
        self.sync()
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

    def median(self) -> float:
        return float(np.median(self.times))


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, ready to paste into RESULTS.md."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(fmt(v) for v in row) + " |")
    sys.stdout.flush()


def accuracy(probs_or_logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs_or_logits.argmax(1).cpu() == labels.cpu()).float().mean())


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.cpu().numpy()


def fit_as_a_worker(model_cfg, images: np.ndarray, targets: torch.Tensor, test_x, test_y, seed: int) -> torch.nn.Module:
    """Train as a worker does (its evaluation schedule, its inference timing); the model."""
    torch.manual_seed(seed)
    x = torch.from_numpy(images).to(test_x.device)
    net = model_cfg.spec().build(tuple(images.shape[1:]), 10, *channel_stats(images)).to(test_x.device)
    every = model_cfg.training.evaluation_every
    hyper = model_cfg.training

    def evaluate(epoch: int, train: dict[str, float]) -> None:
        if epoch % every == 0 or epoch == hyper.epochs:
            accuracy_and_loss(predict_logits(net, test_x), test_y)

    train(net, x, targets, hyper, evaluate, seed=seed)
    inference_time(net, test_x, 5, warm_up=False)
    return net


def deepmimic(*args: str, ray_address: str | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """`deepmimic ARGS` as a user runs it (a fresh process that starts its own local Ray, or joins the one at
    `ray_address`): its wall seconds and the finished process; its output, and exit, if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deepmimic.cli", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return time.perf_counter() - start, proc
