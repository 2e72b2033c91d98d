"""Test-set metrics: accuracy, loss, agreement, confusion matrices, inference time."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .allocator import keep_freed_memory


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits for all `images` with the model in eval mode, in batches of
    `batch_size` (default: 256 on a CPU, where larger batches fall out of the
    caches and ran slower; 2048 on a GPU: benchmarks/RESULTS.md).

    The model runs channels-last, as in training: a model loaded from a
    checkpoint comes back NCHW, whose convolutions ran several times slower on a CPU.
    """
    keep_freed_memory()
    batch_size = batch_size or (256 if images.device.type == "cpu" else 2048)
    was_training = model.training
    model.eval()
    # Outside inference mode: a buffer it replaced there would become an inference tensor, which the next
    # in-place write refuses (DDP's buffer broadcast at the next training step failed on every worker group).
    model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out.float()


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy against true labels."""
    acc = (logits.argmax(1) == labels).float().mean().item()
    return acc, F.cross_entropy(logits, labels).item()


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def agreement(preds: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples on which two models predict the same class."""
    return float(np.mean(preds == reference))


def inference_time(model: nn.Module, images: torch.Tensor, repeats: int = 5, warm_up: bool = True) -> float:
    """Mean seconds to classify all `images` (the paper's Table 6), after one warm-up pass
    (`warm_up=False` where the model has just classified them)."""
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    if warm_up:
        predict_logits(model, images)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        predict_logits(model, images)
    sync()
    return (time.perf_counter() - start) / repeats


def probability_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, object]:
    """Accuracy, loss (mean negative log-likelihood) and confusion matrix of
    answered probabilities: how a black-box or ensemble mentor is scored."""
    preds = probs.argmax(1)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    return {"test_accuracy": float(np.mean(preds == labels)), "test_loss": float(nll.mean()),
            "confusion_matrix": confusion_matrix(labels, preds, num_classes).tolist()}


def paired_bootstrap(reference_right: np.ndarray, model_right: np.ndarray, rounds: int = 2000,
                     level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval for `model`'s accuracy minus `reference`'s on the same test images:
    images are resampled with replacement, each keeping both models' correctness (paired), so the spread
    is that of the difference, not of two independent accuracies."""
    diff = model_right.astype(np.float32) - reference_right.astype(np.float32)
    rng = np.random.default_rng(seed)
    # In chunks: rounds × images indices at once would take 2000 × 10,000 × 8 bytes.
    means = np.concatenate([diff[rng.integers(0, len(diff), (min(250, rounds - i), len(diff)))].mean(1)
                            for i in range(0, rounds, 250)])
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
