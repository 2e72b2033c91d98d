"""Experiment files near the schema, generated (hypothesis): each passes every check made before Ray starts
(`deepmimic sweep --check`) or ends in one line and exit 2, never a traceback. `benchmarks/fuzz_configs.py` runs
thousands; `make test` a few hundred, the same ones each run (derandomized), so a failure is found again."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmimic.cli import main

SPACE: dict[str, Any] = {
    "name": "fuzz",
    "dataset": {"name": "digits"},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8, "training": {"label_smoothing": 0.1}},
    "students": [{"name": "A", "architecture": "c-fc", "width": 4}],
    "split": {"mentor_ratio": 0.2},
    "method": {"name": "hinton", "temperature": 2},
    "resources": {"cpus_per_worker": 1},
    "grid": {"seed": [0, 1], "student": ["A"]},
}
# Words the schema knows, so that mutations reach past the first type check into deeper rules.
WORDS = ["digits", "fashion_mnist", "image_folder", "parquet", "c-fc", "c-mp-fc2", "c2-mp-fc2", "x-y",
         "torchvision/resnet18", "timm/nope", "hinton", "deepmimic", "supervised", "randaugment", "Mentor", "A",
         "teacher", "members", "fixmatch", "ceiling", "black_box", "onnx", "http", "generations", "mentor_ratio",
         "seed", "student", "epochs", "width", "../..", "/", "", " ", "\x00", "é", "-1", "1e309", "*", "a" * 300]
scalars = (st.none() | st.booleans() | st.sampled_from(WORDS) | st.floats(allow_nan=True, allow_infinity=True)
           | st.integers(-(2**64), 2**64) | st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30, 0.5, 1e-300])
           | st.text(st.characters(exclude_categories=("Cs",)), max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)


def paths(node: Any, here: tuple = ()) -> list[tuple]:
    """Every place in a nested mapping or list that a mutation may change."""
    found = [here] if here else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found += paths(child, here + (key,))
    return found


def mutate(space: dict, data: st.DataObject) -> dict:
    """`space` with one to three values replaced, keys removed or keys added."""
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(space)))
        *parents, last = path
        holder = space
        for key in parents:
            holder = holder[key]
        how = data.draw(st.sampled_from(["replace", "remove", "add"]))
        if how == "remove" and isinstance(holder, dict):
            del holder[last]
        elif how == "add" and isinstance(holder[last], dict):
            holder[last][data.draw(st.sampled_from(WORDS) | st.text(max_size=6))] = data.draw(values)
        else:
            holder[last] = data.draw(values)
    return space


def check(space: dict, folder: Path) -> tuple[int, str]:
    """`deepmimic sweep FILE --check` in this process: its exit code and what it wrote to stderr."""
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, allow_unicode=True))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", str(path), "--check", "--storage", str(folder / "runs")])
    return code, err.getvalue()


def test_the_unmutated_space_passes_its_checks(tmp_path):
    assert check(yaml.safe_load(yaml.safe_dump(SPACE)), tmp_path) == (0, "")


def test_a_key_holding_a_newline_is_named_on_one_line(tmp_path):
    space = yaml.safe_load(yaml.safe_dump(SPACE))
    space["dataset"]["bad\nkey"] = 1
    assert check(space, tmp_path) == (2, f"deepmimic: error: {tmp_path}/space.yaml: dataset.bad\\nkey: unknown key\n")


def test_a_grid_over_students_holds_their_names(tmp_path):
    space = yaml.safe_load(yaml.safe_dump(SPACE))
    space["grid"]["student"] = [{"name": "A"}]
    assert check(space, tmp_path)[1].endswith("grid.student: each value a student's name, or a list of names\n")


@settings(max_examples=600, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_mutated_space_passes_or_ends_in_one_line_and_exit_2(data):
    space = mutate(yaml.safe_load(yaml.safe_dump(SPACE)), data)
    with tempfile.TemporaryDirectory() as folder:
        code, err = check(space, Path(folder))
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("deepmimic: error: ") and err.count("\n") == 1, err
    else:
        assert err == "", err
