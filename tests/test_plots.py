"""Plots are PNG files written atomically with a manifest, from typed results."""

from __future__ import annotations

from deepmimic import plots
from deepmimic.core import artifacts

from .results_fixtures import mentor, student

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curves_and_confusion_matrices_are_whole_pngs(tmp_path):
    models = [mentor(), student("A", 0.88)]
    for draw, name in ((plots.learning_curves, "curves.png"), (plots.confusion_matrices, "cm.png")):
        draw(models, str(tmp_path / name))
        assert (tmp_path / name).read_bytes().startswith(PNG) and artifacts.intact(str(tmp_path / name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "cm.png.manifest.json", "curves.png",
                                                          "curves.png.manifest.json"]  # no temporary file left


def test_accuracy_by_an_axis(tmp_path):
    plots.accuracy_by("split", {"Mentor": [(0.5, 0.95), (0.2, 0.9)], "A": [(0.2, 0.88)]}, str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes().startswith(PNG)


def test_galleries_are_drawn_from_what_a_trial_kept_once_asked_for(tmp_path):
    import io

    import numpy as np

    from deepmimic.core.galleries import gather

    rng = np.random.default_rng(0)
    labels, mentor_says = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    kept = gather(rng.integers(0, 255, (60, 1, 8, 8), dtype=np.uint8), labels, mentor_says, labels,
                  ("a", "b", "c"), "S and M")
    buffer = io.BytesIO()
    np.savez(buffer, **kept)
    artifacts.write_bytes(buffer.getvalue(), str(tmp_path / "galleries.npz"))
    png = plots.gallery_figure(str(tmp_path / "galleries.npz"))
    assert png == str(tmp_path / "galleries.png") and (tmp_path / "galleries.png").read_bytes().startswith(PNG)
    assert plots.gallery_figure(png) == png  # an older trial's own PNG, as it is
