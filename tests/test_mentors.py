"""Black-box and ensemble mentors in one sweep through the real CLI on the session's Ray.

Mentor B is trained here by the core loop and exported to ONNX and served over
HTTP on loopback: the sweep knows it only by its answers. Mentor A is trained by
the sweep; the ensemble averages A and the ONNX B.
"""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepmimic.core import serving
from deepmimic.core.architectures import ModelSpec, channel_stats
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.training import Training, train

from .conftest import scoring_endpoint, session_ray, sweep
from .test_report import row

STUDENT = {"name": "Student", "architecture": "c-mp-fc2", "width": 8}


@pytest.fixture(scope="module")
def mentor_b(digits):
    torch.manual_seed(0)
    model = ModelSpec("c-mp-fc2", width=8).build((1, 8, 8), 10, *channel_stats(digits.train.images))
    train(model, torch.from_numpy(digits.train.images), torch.from_numpy(digits.train.labels), Training(epochs=30))
    predicted = predict_logits(model, torch.from_numpy(digits.test.images)).argmax(1).numpy()
    accuracy = float((predicted == digits.test.labels).mean())
    return model, accuracy


@pytest.fixture(scope="module")
def mentors_sweep(tmp_path_factory, mentor_b):
    ray = session_ray()
    tmp = tmp_path_factory.mktemp("mentors")
    model, _ = mentor_b
    serving.export(model, (1, 8, 8), "onnx", str(tmp / "b.onnx"))
    onnx = {"name": "B-onnx", "black_box": {"kind": "onnx", "location": str(tmp / "b.onnx")}}
    trained = {"name": "A", "architecture": "c-mp-fc2", "width": 8}
    with scoring_endpoint(model) as url:
        http = {"name": "B-http", "black_box": {"kind": "http", "location": url, "batch_size": 128, "timeout_s": 10,
                                               "retries": 2, "max_requests_per_s": 50}}
        space = {"name": "mentors", "dataset": {"name": "digits"}, "training": {"epochs": 12}, "mentor": trained,
                 "students": [STUDENT], "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
                 "fault_tolerance": {"checkpoint_every": 0},
                 "tracking": {"models": "none"},  # no claim here reads figures or models
                 "grid": {"mentor": [http, onnx, trained, {"name": "A+B", "members": [trained, onnx]},
                                     {**trained, "name": "Ceiling", "ceiling": True},
                                     {**trained, "name": "A-g1", "teacher": trained, "training": {"shift": 1}}]}}
        proc = sweep(ray, tmp, space, str(tmp / "out"), str(tmp / "cache"))
    with open(tmp / "out" / "results.csv") as f:
        rows = {r["mentor"]: r for r in csv.DictReader(f)}
    return tmp, proc, rows


@pytest.mark.parametrize("mentor", ["B-http", "B-onnx"])
def test_a_black_box_mentor_is_mimicked_to_098_relative_accuracy(mentors_sweep, mentor_b, mentor):
    _, _, rows = mentors_sweep
    assert float(rows[mentor]["mentor_accuracy"]) == pytest.approx(mentor_b[1], abs=1e-9)  # its answers, scored by us
    assert float(rows[mentor]["relative_accuracy"]) >= 0.98


def test_the_sweep_counts_the_queries_it_made(mentors_sweep):
    tmp, _, rows = mentors_sweep
    # every pool image (80% of digits' 1347 training images) and every test image, once
    assert rows["B-http"]["mentor_queries"] == rows["B-onnx"]["mentor_queries"] == str(1078 + 450)
    mentor = json.loads(next(p for p in (tmp / "cache" / "mentors").glob("*/mentor.json")
                             if json.loads(p.read_text())["result"]["name"] == "B-http").read_text())["result"]
    assert mentor["queries"] == {"requests": 9 + 4, "images": 1528, "retries": 0, "cached": 0}  # batches of 128
    assert mentor["architecture"] == "black box (http)" and mentor["params"] is None


def test_an_ensemble_student_is_reported_beside_the_single_mentor_students(mentors_sweep):
    tmp, proc, rows = mentors_sweep
    assert rows["A+B"]["mentor_architecture"] == "ensemble (mean): A + B-onnx"
    single = [float(rows[m]["mentor_accuracy"]) for m in ("A", "B-onnx")]
    assert float(rows["A+B"]["mentor_accuracy"]) >= min(single)
    table = proc.stdout[proc.stdout.index("## Mentors"):]
    for mentor in ("B-http", "B-onnx", "A", "A+B"):
        assert f"| {mentor} |" in table


def test_ensemble_members_are_trained_once_and_shared(mentors_sweep):
    tmp, _, _ = mentors_sweep
    counts = json.loads((tmp / "out" / "sweep.json").read_text())["counts"]
    assert counts["mentors"] == 6 and counts["trials_run"] == 6  # A, B-http, B-onnx, A+B, Ceiling, A-g1
    # A once though three mentors need it (B-onnx's answers shared too), the ceiling and A's generation
    assert len(list((tmp / "cache").glob("mentors/*/ray/mentor-*"))) == 3


def test_the_supervised_ceiling_learns_from_every_true_label_and_is_reported_as_a_reference(mentors_sweep):
    tmp, proc, rows = mentors_sweep
    (table,) = (tmp / "cache").glob("mentors/*/every_label.parquet")
    every = pq.read_table(table, columns=["id", "label"])
    assert every.num_rows == 1347 and len(set(every.column("id").to_pylist())) == 1347  # all training images once
    assert float(rows["Ceiling"]["mentor_accuracy"]) > float(rows["A"]["mentor_accuracy"])  # 5× the labels
    references = proc.stdout[proc.stdout.index("## Against the generation-0 mentor (A)"):]
    ceiling = row(references, "Ceiling (reference: saw the pool's labels)")
    low, high = (float(x) for x in ceiling[5].strip("[]").split(","))
    gap = float(ceiling[4])
    assert low <= gap <= high and gap == pytest.approx(
        100 * (float(rows["Ceiling"]["mentor_accuracy"]) - float(rows["A"]["mentor_accuracy"])), abs=0.01)
    assert row(references, "A")[4:] == ["–", "–"]  # the reference itself
    assert "Student ← Ceiling (reference: saw the pool's labels)" in references


def test_a_generation_is_a_cached_mentor_taught_by_its_teacher_a_nested_run_and_a_row(mentors_sweep):
    tmp, proc, rows = mentors_sweep
    made = {json.loads(p.read_text())["result"]["name"]: json.loads(p.read_text())
            for p in (tmp / "cache").glob("mentors/*/mentor.json")}
    assert {"A", "A-g1"} <= set(made)
    learnt = pq.read_table(next((tmp / "cache").glob("mentors/*/learning_table.parquet")))
    assert learnt.num_rows == 1347  # A's labelled images and its answers for the pool
    trials = [json.loads(p.read_text()) for p in (tmp / "out").glob("trials/*/trial.json")]
    assert sum(t["mentor"]["name"] == "A-g1" for t in trials) == 1  # its student distils from it, not from A
    assert "| A-g1 | c-mp-fc2 | Student |" in proc.stdout[proc.stdout.index("## Mentors"):]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mentors").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    nested = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    g1 = next(r for name, r in nested.items() if name.startswith("A-g1"))
    assert g1.data.params["teacher"] == "A" and g1.data.params["generation"] == "1"
    assert g1.data.metrics["test_accuracy"] == made["A-g1"]["result"]["test_accuracy"]
