"""Test-set metrics: accuracy, loss, agreement, confusion matrices, inference time."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .allocator import keep_freed_memory


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits for all `images` with the model in eval mode, in batches of
    `batch_size` (default: 256 on a CPU, where larger batches fall out of the
    caches and ran 2.3× slower here; 2048 on a GPU).

    The model runs channels-last, as in training: a model loaded from a
    checkpoint comes back NCHW, and its convolutions ran 4× slower on this CPU.
    """
    keep_freed_memory()
    batch_size = batch_size or (256 if images.device.type == "cpu" else 2048)
    was_training = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)
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
