"""Black-box and ensemble mentors in one sweep through the real CLI on the session's Ray.

Mentor B is trained here by the core loop and exported to ONNX and served over
HTTP on loopback: the sweep knows it only by its answers. Mentor A is trained by
the sweep; the ensemble averages A and the ONNX B.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from deepmimic.core import serving
from deepmimic.core.architectures import ModelSpec, channel_stats
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.training import Training, train

from .conftest import scoring_endpoint, sweep

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
    import ray

    from deepmimic.distributed.cluster import connect

    connect()
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
                 "grid": {"mentor": [http, onnx, trained, {"name": "A+B", "members": [trained, onnx]}]}}
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
    assert mentor["queries"] == {"requests": 9 + 4, "images": 1528, "retries": 0}  # batches of 128
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
    assert counts["mentors"] == 4 and counts["trials_run"] == 4  # A, B-http, B-onnx, A+B; B-onnx shared
    assert len(list((tmp / "cache").glob("mentors/*/ray/mentor-*"))) == 1  # A alone trained, once
