"""What answers images with class probabilities: a trained model's checkpoint, or a black box
(`black_box.py`), opened where the asking happens (a trial, a Ray task, a Ray Data actor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from . import checkpoints
from .black_box import Queries
from .soft_labels import soft_labels


class Answering(Protocol):
    """An opened answerer: probabilities (N×K float32) for uint8 images, and the queries it was asked (a black
    box's; None for a model of ours)."""

    queries: Queries | None

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


class Answerer(Protocol):
    def open(self, device: torch.device) -> Answering: ...


@dataclass(frozen=True)
class ModelAnswers:
    """A trained model's checkpoint folder (a local path or a storage URI)."""

    checkpoint: str

    def open(self, device: torch.device) -> Answering:
        return _Model(checkpoints.load_model_at(self.checkpoint, device), device)


class _Model:
    queries = None

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return soft_labels(self.model, torch.from_numpy(images).to(self.device))

