"""The mentor stage's own reading of the data (what the config names is what it loads) and its cache's checks."""

from __future__ import annotations

import json

from deepmimic.config import parse_experiment
from deepmimic.core import artifacts
from deepmimic.distributed.keys import mentor_key
from deepmimic.distributed.mentor_folder import MentorFolder
from deepmimic.distributed.mentor_stage import _load, train_mentor

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


def test_a_mentor_whose_weights_have_a_flipped_byte_is_trained_again_and_the_rebuild_recorded(tmp_path, ray_local):
    """Its checkpoint is checked with its tables before the cached mentor is used: damaged, the mentor is trained
    again (no intact checkpoint to go on from) and the rebuild recorded beside it, where a sweep counts it."""
    cfg = parse_experiment({"dataset": {"name": "digits"}, "training": {"epochs": 2},
                            "mentor": {"name": "M", "architecture": "c-fc", "width": 4},
                            "students": [{"name": "S", "architecture": "c-fc", "width": 4}],
                            "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
                            "fault_tolerance": {"checkpoint_every": 0}})
    folder = MentorFolder.at(str(tmp_path), mentor_key(cfg))
    first = train_mentor(cfg, folder)
    weights = f"{first.result.checkpoint}/model.pt"
    data = bytearray(open(weights, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(weights, "wb").write(bytes(data))
    again = train_mentor(cfg, folder)
    assert again.made_now and not again.result.resumed_from_epoch and len(again.result.history) == 2
    artifacts.verify(again.result.checkpoint)
    records = [json.loads(p.read_text())["rebuilt"] for p in (tmp_path / "mentors" / folder.path.rsplit("/", 1)[1]
                                                               / "rebuilt").glob("*.json")
               if not p.name.endswith(".manifest.json")]
    assert records == [first.result.checkpoint]
