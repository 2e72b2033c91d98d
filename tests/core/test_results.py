"""Typed results survive their JSON files, and files written before the schema existed still read."""

from __future__ import annotations

import json

from deepmimic.core import artifacts
from deepmimic.core.black_box import Queries
from deepmimic.core.results import SCHEMA, Epoch, MentorResult, RunSummary, TrialRecord

from ..results_fixtures import record


def test_a_trial_record_round_trips_through_its_json_file(tmp_path):
    r = record("A", 0.88, grid={"seed": 1})
    artifacts.write_json(r, str(tmp_path / "trial.json"))
    saved = artifacts.read_json(str(tmp_path / "trial.json"))
    assert saved["schema"] == SCHEMA
    assert TrialRecord.from_json(saved) == r


def test_a_schema_0_trial_file_still_reads():
    """As sessions before typed results wrote it: `variant` and `train_size` dicts, no `schema`."""
    row = {"name": "A", "architecture": "c-fc", "params": 10, "test_accuracy": 0.9, "test_loss": 0.3,
           "inference_time_s": 0.01, "device": "cpu", "node_id": "n", "confusion_matrix": [[1]],
           "checkpoint": "/c", "history": [{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.9, "test_loss": 0.3}],
           "resumed_from_epoch": 0}
    old = {"key": "k", "mentor_key": "m", "grid": {"student": "A"}, "seed": 0, "split_ratio": 0.2,
           "variant": {"removal_bound": 0.3, "ood_ratio": 0.0},
           "mentor": {**row, "queries": {"requests": 2, "images": 5, "retries": 0}, "stage_times_s": {"x": 1.0}},
           "student": {**row, "method": "deepmimic", "temperature": 1.0, "relative_accuracy": 1.0, "agreement": 0.9,
                       "train_size": {"pool": 80, "ood": 4}, "accuracy_where_mentor_wrong": None,
                       "ood_agreement": None}}
    r = TrialRecord.from_json(json.loads(json.dumps(old)))
    assert r.removal_bound == 0.3 and (r.student.train_pool, r.student.train_ood) == (80, 4)
    assert r.mentor.queries == Queries(2, 5, 0) and r.student.history == (Epoch(1, 1.0, 0.9, 0.3),)


def test_a_schema_0_run_summary_names_its_confusion_matrix_confusion():
    summary = RunSummary.from_json({"params": 1, "test_accuracy": 1.0, "test_loss": 0.0, "inference_time_s": 0.1,
                                    "confusion": [[2, 0], [0, 2]], "history": []})
    assert summary.confusion_matrix == [[2, 0], [0, 2]]
    assert MentorResult.from_json({**summary.to_json(), "name": "M", "architecture": "c"}).queries is None
