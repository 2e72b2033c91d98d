"""Figures: learning curves (Figs. 2, 4, 5), confusion matrices (Fig. 3), accuracy by split ratio (Fig. 1),
galleries of test images (Figs. 6-7), a student search's frontier, accuracy against a query budget."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .core import artifacts  # noqa: E402
from .core.galleries import GALLERIES  # noqa: E402
from .core.results import ModelResult  # noqa: E402
from .core.student_search import Candidate, SearchSummary, pareto_front  # noqa: E402


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
    # Fixed margins: tight_layout would double the time to draw these two figures, drawn for every run.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
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
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, bottom=0.12, top=0.92, wspace=0.15)
    _save(fig, path)


def run_figures(models: list[ModelResult], folder: str) -> tuple[str, ...]:
    """A training run's figures in `folder` (its learning curves and confusion matrices; a student's beside its
    mentor's), which its MLflow run shows: their paths."""
    paths = (f"{folder}/learning_curves.png", f"{folder}/confusion_matrices.png")
    learning_curves(models, paths[0])
    confusion_matrices(models, paths[1])
    return paths


def accuracy_by(x_label: str, series: dict[str, list[tuple[float, float]]], path: str, log_x: bool = False) -> None:
    """Accuracy against one grid axis, a line per model (Fig. 1 for the split ratio)."""
    fig, ax = plt.subplots(figsize=(7, 4.5) if len(series) > 4 else (6, 4))
    colours: dict[str, str] = {}  # a student learning from a mentor (`S ← M`) in its mentor's colour, dashed
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        teacher = name.split(" ← ")[-1]
        line, = ax.plot(xs, ys, marker="o", label=name, linestyle="--" if "←" in name else "-",
                        color=colours.get(teacher))
        colours.setdefault(teacher, line.get_color())
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(sorted({x for points in series.values() for x, _ in points}))
        ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def budget_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], ceilings: dict[str, float], title: str,
                  path: str) -> None:
    """Test accuracy and agreement with the mentor against the pool images asked, a line per selection strategy,
    the unbudgeted student's as a dashed level."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (metric, lines) in zip(axes, curves.items()):
        for name, points in lines.items():
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=name, linestyle="-" if name != "random" else ":")
        if metric in ceilings:
            ax.axhline(ceilings[metric], color="black", linestyle="--", linewidth=1, label="every pool image")
        ax.set_xlabel("pool images asked (queries)")
        ax.set_ylabel("test accuracy" if metric == "test_accuracy" else "agreement with the mentor")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def galleries(data: dict[str, np.ndarray], path: str) -> None:
    """Figs. 6-7 from what `core.galleries.gather` kept: a panel per gallery, its chosen test images with the true,
    the mentor's and the student's classes under each, and how many test images it had to choose from.

    Each panel is one mosaic image with its captions as text (75 small axes took seconds to draw)."""
    side, names = int(data["side"]), [str(n) for n in data["class_names"]]
    fig, axes = plt.subplots(1, len(GALLERIES), figsize=(4.6 * len(GALLERIES), 5.2), squeeze=False)
    for ax, kind in zip(axes[0], GALLERIES):
        images = data[f"{kind}.images"]
        _, channels, h, w = images.shape  # (0, C, H, W) for a gallery that found none
        cell_h = h + max(4, h // 2)  # room for the caption under each image
        mosaic = np.full((side * cell_h, side * (w + 2), channels), 255, dtype=np.uint8)
        for j, image in enumerate(images):
            r, c = divmod(j, side)
            mosaic[r * cell_h : r * cell_h + h, c * (w + 2) : c * (w + 2) + w] = image.transpose(1, 2, 0)
            classes = (names[data[f"{kind}.labels"][j]], names[data[f"{kind}.mentor"][j]],
                       names[data[f"{kind}.student"][j]])
            ax.text(c * (w + 2) + w / 2, r * cell_h + h + 0.5, " ".join(x[:5] for x in classes), fontsize=5.5,
                    ha="center", va="top")
        ax.imshow(mosaic[..., 0] if channels == 1 else mosaic, cmap="gray" if channels == 1 else None,
                  vmin=0, vmax=255)
        ax.set_title(f"{GALLERIES[kind][0]} ({int(data[f'{kind}.found'])})", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{data['title']}: under each image its true class, the mentor's, the student's", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def gallery_figure(kept: str) -> str:
    """The PNG of the galleries a trial kept (`galleries.npz`), drawn beside it the first time it is asked for
    (a trial of an older version kept the PNG itself: returned as it is)."""
    if kept.endswith(".png"):
        return kept
    png = kept.removesuffix(".npz") + ".png"
    if not artifacts.intact(png):
        with np.load(io.BytesIO(artifacts.read_bytes(kept)), allow_pickle=False) as data:
            galleries(dict(data), png)
    return png


def frontier(search: SearchSummary, path: str) -> None:
    """Each searched student's cost (parameters or latency, log scale) against its validation score over the
    mentor's; trials the scheduler stopped early hollow, the Pareto front joined, the target dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))

    def cost(c: Candidate) -> float:
        return c.cost(search.objective)

    for stopped, style in ((False, {"color": "C0"}), (True, {"facecolors": "none", "edgecolors": "C0"})):
        shown = [c for c in search.candidates if c.stopped_early == stopped]
        ax.scatter([cost(c) for c in shown], [c.validation_relative for c in shown], s=28,
                   label="stopped early" if stopped else "trained in full", **style)
    front = pareto_front(search.candidates, search.objective)
    ax.plot([cost(c) for c in front], [c.validation_relative for c in front], color="C1", marker="o",
            label="Pareto front")
    best = search.best
    ax.scatter([cost(best)], [best.validation_relative], marker="*", s=220, color="C3", zorder=5,
               label=f"{search.student}: {best.architecture}")
    ax.axhline(search.target_relative, color="gray", linestyle="--", label=f"target {search.target_relative:g}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters" if search.objective == "params" else "latency, ms per image (batch 1)")
    ax.set_ylabel(f"validation {'accuracy' if search.selection == 'labels' else 'agreement'} / mentor's")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
