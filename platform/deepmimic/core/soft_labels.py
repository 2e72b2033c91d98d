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


def combine(members: list[np.ndarray], rule: str = "mean") -> np.ndarray:
    """One soft label per sample from several mentors' (each N×K): the `mean` of
    their probabilities, their normalised `geometric` mean, or a one-hot majority
    `vote` (ties to the lowest class)."""
    stack = np.stack(members).astype(np.float64)
    if rule == "mean":
        out = stack.mean(0)
    elif rule == "geometric":
        out = np.exp(np.log(np.clip(stack, 1e-12, None)).mean(0))
        out /= out.sum(1, keepdims=True)
    elif rule == "vote":
        votes = np.eye(stack.shape[2])[stack.argmax(2)].sum(0)
        out = np.eye(stack.shape[2])[votes.argmax(1)]
    else:
        raise ValueError(f"unknown ensemble rule {rule!r}")
    return out.astype(np.float32)
