"""Cache keys stay what they were: a mentor, trial or set cached by an earlier version is found again."""

from __future__ import annotations

import pytest

from deepmimic.config import load_sweep
from deepmimic.distributed.keys import mentor_key, student_key

from .conftest import ROOT

# (search space, grid value picked by its first axis, mentor key, first student's key) as the sweeps before
# mentor kinds and methods had registries computed them (commit fbf079a).
KEYS = [("quickstart", None, "62eb588a26050aa2", "e2e6b96bfbdddd46"),
        ("fashion_mnist_methods", "deepmimic", "ba85819026f47f18", "0006be362c4a8086"),
        ("fashion_mnist_methods", "hinton", "ba85819026f47f18", "268fd47e2e74b451"),
        ("fashion_mnist_methods", "hard", "ba85819026f47f18", "cd28fe2dff79c403"),
        ("fashion_mnist_methods", "supervised", "ba85819026f47f18", "d01c3419ef9c9187"),
        ("fashion_mnist_mentors", "Mentor-B", "5d39d4779538e24b", "f87850147ac0f8f6"),  # a second seed
        ("fashion_mnist_mentors", "Mentor-A+B", "3ee1ec2200924f77", "049ac40051af2939")]  # an ensemble


@pytest.mark.parametrize("space,value,mentor,student", KEYS)
def test_keys_of_shipped_spaces_are_those_of_earlier_versions(space, value, mentor, student):
    def picked(values: dict) -> bool:
        first = next(iter(values.values()))
        return value is None or (first.get("name") if isinstance(first, dict) else first) == value

    cfg = next(c for v, c in load_sweep(ROOT / "search_spaces" / f"{space}.yaml")[1] if picked(v))
    assert (mentor_key(cfg), student_key(cfg, cfg.students[0])) == (mentor, student)


def test_a_weights_file_enters_the_key_by_its_contents_and_its_path_is_made_absolute(tmp_path, monkeypatch):
    from deepmimic.schema import ModelConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"one")
    model = ModelConfig(name="M", architecture="torchvision/resnet18", weights="w.pt")
    assert model.weights == str(tmp_path / "w.pt")  # trial processes run in other folders
    first = model.identity()
    (tmp_path / "w.pt").write_bytes(b"two")  # replaced at the same path
    assert model.identity() != first
    named = ModelConfig(name="M", architecture="torchvision/resnet18", weights="IMAGENET1K_V1")
    assert named.identity()["weights"] == "IMAGENET1K_V1"
