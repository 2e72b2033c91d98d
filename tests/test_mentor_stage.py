"""The mentor stage's own reading of the data: what the config names is what it loads."""

from __future__ import annotations

from deepmimic.config import parse_experiment
from deepmimic.distributed.mentor_stage import _load

from .conftest import image_folder


def test_out_of_domain_images_of_ones_own_folder_are_read_with_their_whole_source(tmp_path):
    """`ood.dataset` of a user's own images is loaded as checked: with its image size (and globs, channels),
    not by name and root alone, which read 16×16 images for an 8×8 data set and failed in the mentor stage."""
    image_folder(tmp_path / "other", per_class=5, classes=2, side=16, test=0)
    cfg = parse_experiment({
        "mentor": {"name": "M", "architecture": "c-fc"}, "students": [{"name": "S", "architecture": "c-fc"}],
        "ood": {"source": "dataset", "classes": ["class1"],
                "dataset": {"name": "image_folder", "root": str(tmp_path / "other"), "image_size": [8, 8]}}})
    dataset, ood = _load(cfg)
    assert ood.shape == dataset.train.shape == (1, 8, 8) and len(ood) == 4  # 5, less the test set's fifth
