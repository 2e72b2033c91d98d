"""A mentor paid per query: a budgeted sweep on digits against `deepmimic serve` (a real process counting the
images it answers), through the real CLI on the session's Ray. Two strategies at a budget of 100 pool images and
the unbudgeted ceiling (budget 1.0: every pool image), one student each."""

from __future__ import annotations

import csv
import json
import urllib.request

import pytest

from deepmimic.core import tables

from .conftest import session_ray, sweep

BUDGET, POOL, TEST = 100, 1078, 450   # digits' 20/80 split: 1078 pool images, 450 test images


def served(url: str) -> int:
    """Images the server has answered since it started."""
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())["images"]


def mentors(cache) -> dict[tuple, dict]:
    """Each finished mentor stage in the cache by (selection, pool images asked): its outcome."""
    found = {}
    for path in cache.glob("mentors/*/mentor.json"):
        outcome = json.loads(path.read_text())
        budget = outcome["result"]["budget"]
        found[(budget["selection"], budget["asked"]) if budget else ("all", POOL)] = outcome
    return found


@pytest.fixture(scope="module")
def budget_sweep(tmp_path_factory, model_server):
    ray = session_ray()
    url = model_server[0]
    tmp = tmp_path_factory.mktemp("budget")
    box = {"kind": "http", "location": url + "/invocations", "batch_size": 64, "timeout_s": 10, "rounds": 3,
           "budget": BUDGET}
    space = {"name": "budget", "dataset": {"name": "digits"}, "training": {"epochs": 4},
             "mentor": {"name": "Served", "black_box": box},
             "students": [{"name": "S", "architecture": "c-mp-fc2", "width": 8}],
             "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
             "fault_tolerance": {"checkpoint_every": 0},
             "tracking": {"models": "none"},  # no claim here reads figures or models
             "grid": {"mentor.black_box.budget": [BUDGET, 1.0],
                      "mentor.black_box.selection": ["random", "entropy_kcenter"]}}
    before = served(url)
    proc = sweep(ray, tmp, space, str(tmp / "out"), str(tmp / "cache"))
    return tmp, proc, served(url) - before, space


def test_each_budgeted_mentor_gets_answers_for_its_budget_and_every_test_image(budget_sweep):
    tmp, _, _, _ = budget_sweep
    made = mentors(tmp / "cache")
    assert set(made) == {("random", BUDGET), ("entropy_kcenter", BUDGET), ("all", POOL)}  # 1.0: one mentor for both
    for (_, asked), outcome in made.items():
        q = outcome["result"]["queries"]
        assert q["images"] + q["cached"] == asked + TEST  # asked now, or answered before: once each
        assert tables.read(f"{outcome['folder']}/soft_labels.parquet").num_rows == asked


def test_the_server_answered_each_image_once_though_three_mentors_asked(budget_sweep):
    tmp, _, answered, _ = budget_sweep
    assert answered == POOL + TEST  # not 100 + 100 + 1078 + 3 × 450: the answer cache paid for each image once
    with open(tmp / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["selection"], r["pool_queries"]) for r in rows) == sorted(
        [("random", str(BUDGET)), ("entropy_kcenter", str(BUDGET)), ("", "")])


def test_students_learn_from_the_answered_images_only(budget_sweep):
    tmp, _, _, _ = budget_sweep
    trials = [json.loads(p.read_text()) for p in (tmp / "out" / "trials").glob("*/trial.json")]
    assert sorted(t["student"]["train_pool"] for t in trials) == [BUDGET, BUDGET, POOL]


def test_the_report_draws_accuracy_and_agreement_against_queries(budget_sweep):
    tmp, proc, _, _ = budget_sweep
    report = (tmp / "out" / "report.md").read_text()
    section = report[report.index("## What a query budget buys"):]
    assert "![accuracy and agreement against queries](accuracy_vs_queries.png)" in section
    assert "| entropy_kcenter | 100 | 1 |" in section and "| every pool image (ceiling) | 1078 | 1 |" in section
    assert (tmp / "out" / "accuracy_vs_queries.png").stat().st_size > 10_000


def test_a_mentor_made_again_asks_the_server_nothing(budget_sweep, model_server, ray_local):
    tmp, _, _, space = budget_sweep
    url = model_server[0]
    outcome = mentors(tmp / "cache")[("entropy_kcenter", BUDGET)]
    key = outcome["folder"].rsplit("/", 1)[-1]
    (tmp / "cache" / "mentors" / key / "mentor.json").unlink()  # as if the sweep had stopped making it
    for trial in (tmp / "out" / "trials").glob("*/trial.json"):
        if json.loads(trial.read_text())["mentor_key"] == key:
            trial.unlink()
    before = served(url)
    sweep(ray_local, tmp, space, str(tmp / "out"), str(tmp / "cache"))
    assert served(url) == before
    again = mentors(tmp / "cache")[("entropy_kcenter", BUDGET)]["result"]
    assert again["queries"]["images"] == 0 and again["queries"]["cached"] == BUDGET + TEST
    assert again["test_accuracy"] == outcome["result"]["test_accuracy"]
