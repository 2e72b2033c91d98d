"""A student search through the real CLI: Ray Tune with Optuna and ASHA on digits, the frontier, the report's
"Smallest students" section and the answer registered in MLflow (`smaller_first`, the default scheduler, has
its own tests in test_pruning.py)."""

from __future__ import annotations

import csv
import json

import pytest
from mlflow.tracking import MlflowClient

from .conftest import session_ray, sweep

EPOCHS = 9
SPACE = {
    "name": "tiny_search",
    "dataset": {"name": "digits"},
    "training": {"epochs": EPOCHS, "batch_size": 64, "lr": 0.05, "shift": 1},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 16},
    "search": {"student_space": {"conv_blocks": [1, 2], "convs_per_block": 1, "width": [2, 4, 8, 16],
                                 "fc": [0, 1], "batch_norm": [False, True]},
               "target_relative": 0.95, "num_samples": 8, "scheduler": "asha", "grace_period": 1,
               "validation_ratio": 0.2},
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
    "fault_tolerance": {"checkpoint_every": 0},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    ray = session_ray()
    tmp = tmp_path_factory.mktemp("search")
    sweep(ray, tmp, SPACE, str(tmp / "out"), str(tmp / "cache"))
    return tmp / "out", json.loads((tmp / "out" / "search.json").read_text())


def test_asha_stops_weak_students_and_optuna_draws_them_all(searched):
    _, search = searched
    candidates = search["candidates"]
    assert len(candidates) == 8 and search["algorithm"] == "optuna"
    assert any(c["stopped_early"] and c["epochs"] < EPOCHS for c in candidates)
    assert any(not c["stopped_early"] and c["epochs"] == EPOCHS for c in candidates)
    assert sum(c["epochs"] for c in candidates) < 8 * EPOCHS


def test_the_frontier_lists_every_student_and_marks_an_undominated_front(searched):
    out, search = searched
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert {r["trial"] for r in rows} == {c["trial"] for c in search["candidates"]}
    front = sorted((int(r["params"]), float(r["validation_relative"])) for r in rows if r["on_front"] == "True")
    assert front and all(b[1] > a[1] for a, b in zip(front, front[1:]))  # bigger only where better
    assert (out / "frontier.png").stat().st_size > 10_000


def test_the_answer_is_the_smallest_student_meeting_the_target_on_validation(searched):
    _, search = searched
    meeting = [c for c in search["candidates"] if c["validation_relative"] >= search["target_relative"]]
    best = next(c for c in search["candidates"] if c["trial"] == search["winner"])
    assert search["met"] == bool(meeting)
    if meeting:
        assert best["params"] == min(c["params"] for c in meeting)


def test_the_answer_is_trained_in_full_reported_and_registered(searched):
    out, search = searched
    best = next(c for c in search["candidates"] if c["trial"] == search["winner"])
    record = next(json.loads(p.read_text()) for p in out.glob("trials/*/trial.json"))
    assert record["student"]["name"] == "Smallest" and record["student"]["architecture"] == best["architecture"]
    assert len(record["student"]["history"]) == EPOCHS
    report = (out / "report.md").read_text()
    section = report.split("## Smallest students")[1].split("\n## ")[0]
    assert f"`{best['architecture']}`, width {best['width']}, {best['params']:,} parameters" in section
    assert f"{100 * record['student']['relative_accuracy']:.2f}" in section  # its test figure, beside the mentor's
    uri = f"sqlite:///{out}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    [version] = client.search_model_versions("name='tiny_search-Smallest'")
    assert version.tags["relative_accuracy"] == f"{record['student']['relative_accuracy']:.4f}"
