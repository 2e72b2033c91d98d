"""Run names, tags and params of a sweep's MLflow runs, from a real parsed sweep."""

from __future__ import annotations

import yaml

from deepmimic.config import load_sweep
from deepmimic.core.methods import METHODS
from deepmimic.distributed.planning import plan
from deepmimic.run_names import model_params, name, unique, varying

SPACE = {
    "name": "names",
    "training": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2"},
    "students": [{"name": "Student-A", "architecture": "c-mp-fc2"}, {"name": "Student-B", "architecture": "c-fc"}],
    "grid": {"split.mentor_ratio": [0.2, 0.5], "seed": [0, 1], "temperature": [2.0]},
}


def points(tmp_path) -> list:
    (tmp_path / "names.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return load_sweep(tmp_path / "names.yaml")[1]


def test_names_carry_the_grid_values_that_tell_runs_apart():
    assert name("Student-A", {"split.mentor_ratio": 0.2, "seed": 0}, ["split.mentor_ratio", "seed"]) == (
        "Student-A · split 0.2 · seed 0")
    assert varying([{"a": 1, "b": 2, "student": "x"}, {"a": 1, "b": 3, "student": "y"}]) == ["b"]


def test_repeated_names_are_numbered():
    assert unique({"k1": "A", "k2": "A", "k3": "B"}) == {"k1": "A · #1", "k2": "A · #2", "k3": "B"}


def test_every_run_of_a_sweep_has_a_unique_readable_name_and_its_axes_as_tags(tmp_path):
    planned = plan(points(tmp_path))
    names = {label.name for label in planned.labels.values()}
    assert len(names) == len(planned.labels) == 4 + 8  # 4 mentors (split × seed), 8 student trials
    assert "Student-B · split 0.5 · seed 1" in names and "Mentor · split 0.2 · seed 0" in names
    student = next(lb for lb in planned.labels.values() if lb.name == "Student-B · split 0.5 · seed 1")
    assert student.tags == {"split.mentor_ratio": "0.5", "seed": "1", "temperature": "2", "student": "Student-B"}


def test_every_resolved_setting_of_a_model_is_a_param(tmp_path):
    _, cfg = points(tmp_path)[0]
    params = model_params(cfg, cfg.students[1], "student")
    for key in ("architecture", "width", "training.epochs", "training.batch_size", "training.lr",
                "training.momentum", "training.weight_decay", "training.shift", "training.bf16", "method",
                "dataset.name", "split.mentor_ratio", "variant.removal_bound", "variant.ood_ratio",
                "seed", "resources.cpus_per_worker", "resources.num_workers"):
        assert key in params, key
    assert params["architecture"] == "c-fc" and params["training.bf16"] == "auto"
    # resolved: DeepMimic's loss takes no temperature (the grid's 2.0 is for methods that take one)
    assert params["method"] == "deepmimic" and not any(k.startswith("method.") for k in params)


def test_a_methods_knobs_are_params(tmp_path):
    _, cfg = points(tmp_path)[0]
    hinton = cfg.model_copy(update={"method": METHODS["hinton"](temperature=2.0)})
    assert model_params(hinton, cfg.students[0], "student")["method.temperature"] == 2.0
