import json

import pytest
import torch

from deepmimic.core import artifacts, checkpoints
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.artifacts import TornArtifact
from deepmimic.core.optimizer import SGD

SPEC = ModelSpec("c-mp-fc")


def saved(tmp_path):
    net = SPEC.build((1, 8, 8), 10)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    meta = {"spec": {"architecture": "c-mp-fc"}, "shape": [1, 8, 8], "num_classes": 10, "mean": [0.5], "std": [0.25]}
    checkpoints.save(str(tmp_path), net, opt, 3, [{"epoch": 3}], meta)
    return net


def test_a_saved_model_loads_back_with_the_same_weights(tmp_path):
    net = saved(tmp_path)
    back = checkpoints.load_model(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    epoch, history, _ = checkpoints.load_progress(str(tmp_path), SPEC.build((1, 8, 8), 10))
    assert epoch == 3 and history == [{"epoch": 3}]


def test_a_checkpoint_with_a_changed_file_is_refused(tmp_path):
    saved(tmp_path)
    (tmp_path / "progress.json").write_text(json.dumps({"epoch": 99, "history": []}))
    with pytest.raises(TornArtifact, match="content does not match its manifest"):
        checkpoints.load_progress(str(tmp_path), SPEC.build((1, 8, 8), 10))


def test_a_checkpoint_without_manifest_is_refused(tmp_path):
    saved(tmp_path)
    (tmp_path / artifacts.FOLDER_MANIFEST).unlink()
    with pytest.raises(TornArtifact, match="no manifest"):
        checkpoints.load_model(str(tmp_path))
