"""Test-set metrics: accuracy, loss, agreement, confusion matrices, inference time."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits for all `images`, in large batches, with the model in eval mode."""
    was_training = model.training
    model.eval()
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


def inference_time(model: nn.Module, images: torch.Tensor, repeats: int = 5) -> float:
    """Mean seconds to classify all `images` (the paper's Table 6), after one warm-up pass."""
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    predict_logits(model, images)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        predict_logits(model, images)
    sync()
    return (time.perf_counter() - start) / repeats
