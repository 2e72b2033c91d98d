"""The end-to-end pipeline on a real local Ray: split → mentor → soft labels → student."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from deepmimic.config import parse_experiment
from deepmimic.core.architectures import parse
from deepmimic.core.results import ExperimentResult
from deepmimic.core.splits import stratified_split
from deepmimic.distributed.experiment import run_experiment

from .conftest import DEEPMIMIC, ROOT

SMALL = {
    "name": "small",
    "dataset": {"name": "digits"},
    "training": {"epochs": 4, "batch_size": 32},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "training": {"epochs": 10}},
    "students": [{"name": "Student-B", "architecture": "c-fc", "width": 8}],
}


def state(checkpoint_dir: str) -> dict[str, torch.Tensor]:
    return torch.load(os.path.join(checkpoint_dir, "model.pt"), weights_only=True)


@pytest.mark.parametrize("mentor", ["Mentor", "Mentor-g1", "FixMatch", "consistent"])
def test_student_never_sees_a_true_label(ray_local, digits, tmp_path, mentor):
    """Permuting the student pool's true labels changes nothing the student learns: from the mentor, from a
    generation after it (which learns from the labelled images' true classes and the pool's soft labels), from
    a FixMatch mentor (which learns from the labelled images and the pool's images), or from the mentor's network
    asked about each augmented view in the student's steps (`method: consistent`)."""
    # The generation's and FixMatch's strong augmentation is kornia's, a call per operation drawn in a batch:
    # TrivialAugment's one draw an image and a few epochs keep them short (what leaks is not how they are noised).
    noisy = {"epochs": 4, "augment": {"policy": "trivialaugment"}}
    kinds = {"Mentor": {},
             "Mentor-g1": {"mentor": {**SMALL["mentor"], "name": "Mentor-g1", "training": noisy,
                                      "teacher": SMALL["mentor"]}},
             "FixMatch": {"mentor": {**SMALL["mentor"], "name": "FixMatch", "training": {"epochs": 4},
                                     "fixmatch": {"mu": 2, "strong": noisy["augment"]}}},
             "consistent": {"method": "consistent", "training": {**SMALL["training"], "shift": 1}}}
    cfg = parse_experiment({**SMALL, **kinds[mentor]})
    split = stratified_split(digits.train.labels, cfg.split.mentor_ratio, cfg.seed)
    labels = digits.train.labels.copy()
    labels[split.student] = np.random.default_rng(1).permutation(labels[split.student])
    assert (labels != digits.train.labels).mean() > 0.5  # the permutation really scrambles them
    train = type(digits.train)(digits.train.images, labels, digits.train.class_names)
    scrambled = type(digits)(digits.name, train, digits.test)

    a = run_experiment(cfg, str(tmp_path / "a"), digits, split)
    b = run_experiment(cfg, str(tmp_path / "b"), scrambled, split)

    assert a.mentor.name == cfg.mentor.name and cfg.mentor.name in (mentor, "Mentor")
    (pool, *_) = (tmp_path / "a").glob("mentors/*/data/student.parquet")
    assert pq.read_schema(pool).names == ["id", "image"]
    (manifest,) = (tmp_path / "a").glob("mentors/*/student_sets/*/set.json")  # the last generation's only
    student_set = json.loads(manifest.read_text())["table"]["uri"]
    assert pq.read_table(student_set).column_names == ["id", "image", "soft_label"]
    sa, sb = a.students[0], b.students[0]
    for key in ("test_accuracy", "test_loss", "agreement", "relative_accuracy", "confusion_matrix"):
        assert getattr(sa, key) == getattr(sb, key), key
    untimed = [[dataclasses.replace(e, ended_ms=None) for e in s.history] for s in (sa, sb)]  # when is not what
    assert untimed[0] == untimed[1]
    wa, wb = state(sa.checkpoint), state(sb.checkpoint)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sa.test_accuracy > 0.5  # it learnt something, so identical weights mean something


def test_quickstart_meets_the_paper_bar(ray_local, tmp_path):
    """The shipped quickstart through the real CLI, on the session's Ray via RAY_ADDRESS."""
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    out = tmp_path / "qs"
    proc = subprocess.run([*DEEPMIMIC, "run", str(ROOT / "search_spaces" / "quickstart.yaml"), "--set", "grid=null",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ExperimentResult.from_json(json.loads((out / "result.json").read_text()))
    assert (result.dataset, result.split_ratio, result.seed) == ("digits", 0.2, 0)
    assert result.mentor.test_accuracy >= 0.95
    archs = {s.architecture for s in result.students}
    convs = {a: [layer.kind for layer in parse(a)].count("c") for a in archs}
    assert result.mentor.architecture in archs and 1 in convs.values()  # the mentor's and a one-conv one
    for s in result.students:
        assert s.relative_accuracy >= 0.98, s.name
        assert 0.9 <= s.agreement <= 1.0 and s.params > 0
        assert len(s.history) == 60 and s.history[-1].test_accuracy is not None
        assert [e.epoch for e in s.history if e.test_accuracy is not None] == list(range(3, 61, 3))  # eval_every
    assert "Student-B" in proc.stdout and "relative" in proc.stdout
