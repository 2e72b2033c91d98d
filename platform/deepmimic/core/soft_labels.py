"""Soft labels: the mentor's softmax over every student image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .evaluation import predict_logits


def soft_labels(mentor: nn.Module, images: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """The mentor's class probabilities (N×K float32) for uint8 `images`.

    temperature 1 is the paper's plain softmax; higher values soften it (Hinton).
    """
    logits = predict_logits(mentor, images)
    return torch.softmax(logits / temperature, dim=1).cpu().numpy().astype(np.float32)
