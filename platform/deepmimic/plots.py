"""Figures: learning curves (Figs. 2, 4, 5), confusion matrices (Fig. 3), accuracy by split ratio (Fig. 1)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .core import artifacts  # noqa: E402
from .core.results import ModelResult  # noqa: E402


def _save(fig: plt.Figure, path: str) -> None:
    """Written atomically with a manifest: a reader never finds half a PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    artifacts.write_bytes(buffer.getvalue(), path)


def learning_curves(models: list[ModelResult], path: str) -> None:
    """Test loss and accuracy per epoch for each model."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for m in models:
        scored = [e for e in m.history if e.test_accuracy is not None]  # epochs it was evaluated after
        epochs = [e.epoch for e in scored]
        ax_loss.plot(epochs, [e.test_loss for e in scored], label=m.name, marker="." if len(scored) < 30 else None)
        ax_acc.plot(epochs, [e.test_accuracy for e in scored], label=m.name, marker="." if len(scored) < 30 else None)
    for ax, title in ((ax_loss, "test loss"), (ax_acc, "test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def confusion_matrices(models: list[ModelResult], path: str) -> None:
    """Row-normalised confusion matrices side by side (mentor first)."""
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        cm = np.asarray(m.confusion_matrix, dtype=float)
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{m.name} ({m.test_accuracy:.3f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    _save(fig, path)


def accuracy_by(x_label: str, series: dict[str, list[tuple[float, float]]], path: str) -> None:
    """Accuracy against one grid axis, a line per model (Fig. 1 for the split ratio)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
