"""The report's tables from a small list of typed results, and its files."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from deepmimic.core import artifacts
from deepmimic.core.results import pack_correct
from deepmimic.errors import UserError
from deepmimic.report import SWEEP_FILE, write_report

from .results_fixtures import record, summary


def sweep_folder(tmp_path, records, axes=("student",), paper=None):
    artifacts.write_json(dataclasses.replace(summary(records, axes), paper=paper), str(tmp_path / SWEEP_FILE))
    for r in records:
        artifacts.write_json(r, str(tmp_path / "trials" / r.key / "trial.json"))
    return str(tmp_path)


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the first table row that starts with `first_cell`."""
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_architecture_table_gives_mean_and_sd_over_seeds(tmp_path):
    records = [record("A", 0.90, seed=0, mentor_accuracy=0.90), record("A", 0.96, seed=1, mentor_accuracy=0.96),
               record("B", 0.85, seed=0, mentor_accuracy=0.90)]
    text, _ = write_report(sweep_folder(tmp_path, records, ("student", "seed")))
    assert row(text, "Mentor")[3] == "93.00 ± 3.00"
    assert row(text, "A")[3:6] == ["93.00 ± 3.00", "100.00 ± 0.00", "95.00 ± 0.00"]  # accuracy, relative, agreement
    assert row(text, "B")[3:5] == ["85.00", "94.44"]


def test_split_axis_gives_a_row_per_ratio_and_a_plot(tmp_path):
    records = [record("A", 0.9, split_ratio=0.2), record("A", 0.97, split_ratio=0.5, mentor_accuracy=0.95)]
    text, files = write_report(sweep_folder(tmp_path, records, ("split.mentor_ratio", "student")))
    assert row(text, "0.2")[1:3] == ["90.00", "90.00"] and row(text, "0.5")[1:3] == ["95.00", "97.00"]
    assert "accuracy_vs_split.png" in {f.rsplit("/", 1)[-1] for f in files}


def test_results_csv_has_a_row_per_trial_in_grid_order(tmp_path):
    records = [record("B", 0.8), record("A", 0.9)]
    write_report(sweep_folder(tmp_path, records))
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == ["B", "A"]
    assert float(rows[1]["relative_accuracy"]) == pytest.approx(1.0) and rows[0]["train_pool"] == "80"
    assert artifacts.intact(str(tmp_path / "results.csv")) and artifacts.intact(str(tmp_path / "report.md"))


def test_a_torn_trial_file_is_a_one_line_error(tmp_path):
    folder = sweep_folder(tmp_path, [record("A", 0.9)])
    (tmp_path / "trials" / "A-0-0.2" / "trial.json").write_text("{")
    with pytest.raises(UserError, match="run the sweep again"):
        write_report(folder)


def test_a_reproduced_table_stands_beside_the_papers_numbers(tmp_path):
    records = [record("Student-A", 0.97, mentor_accuracy=0.975), record("Student-B", 0.96, mentor_accuracy=0.975)]
    text, _ = write_report(sweep_folder(tmp_path, records, paper="table1"))
    assert row(text, "Mentor")[-2:] == ["97.46", "–"]
    assert row(text, "Student-A")[-2:] == ["97.38", "99.91"] and row(text, "Student-B")[-2:] == ["97.17", "99.7"]


def test_the_papers_table_6_seconds_say_which_data_set_they_timed(tmp_path):
    """Fashion-MNIST runs show the paper's MNIST seconds (Table 1's models were timed on MNIST): the column
    says so; on MNIST itself it needs not."""
    records = [record("Student-B", 0.9)]
    folder = sweep_folder(tmp_path, records)
    artifacts.write_json(dataclasses.replace(summary(records), dataset="fashion_mnist"), f"{folder}/{SWEEP_FILE}")
    text, _ = write_report(folder)
    table = text[text.index("## Inference time"):]
    assert "| model | seconds | ratio to mentor | paper s on MNIST (1050 Ti / 1070) |" in table
    assert row(table, "Mentor")[3] == "0.551 / 0.652"
    artifacts.write_json(dataclasses.replace(summary(records), dataset="mnist"), f"{folder}/{SWEEP_FILE}")
    assert "| paper s (1050 Ti / 1070) |" in write_report(folder)[0]


def by_mentor(name: str, mentor_name: str, accuracy: float, mentor_accuracy: float, seed: int, ratio: float):
    r = record(name, accuracy, seed=seed, split_ratio=ratio, mentor_accuracy=mentor_accuracy)
    return dataclasses.replace(r, key=f"{r.key}-{mentor_name}", mentor_key=f"{r.mentor_key}-{mentor_name}",
                               mentor=dataclasses.replace(r.mentor, name=mentor_name))


def test_the_pool_s_worth_is_a_line_per_mentor_and_student_against_the_labelled_fraction(tmp_path):
    records = [by_mentor("A", m, acc + 0.01 * seed, macc, seed, ratio)
               for ratio, (acc, macc) in ((0.01, (0.5, 0.4)), (0.5, (0.9, 0.88)))
               for m in ("Mentor", "FixMatch") for seed in (0, 1)]
    text, files = write_report(sweep_folder(tmp_path, records, ("split.mentor_ratio", "seed", "mentor")))
    assert "What the unlabelled pool is worth" in text
    header = row(text, "fraction")
    assert header == ["fraction", "Mentor", "A ← Mentor", "FixMatch", "A ← FixMatch"]
    assert row(text, "0.01")[1:3] == ["40.00 ± 0.00", "50.50 ± 0.50"]  # a mentor once a seed; a student a trial
    assert "accuracy_vs_labelled_fraction.png" in {f.rsplit("/", 1)[-1] for f in files}


def test_each_model_is_compared_with_the_generation_0_mentor_image_by_image_over_seeds(tmp_path):
    def right(*wrong: int) -> str:  # which of the fixture's 20 test images a model gets right
        return pack_correct(np.isin(np.arange(20), wrong, invert=True), np.ones(20, bool))

    records = []
    for seed in (0, 1):
        r = by_mentor("A", "Mentor", 0.9, 0.8, seed, 0.1)
        records.append(dataclasses.replace(r, mentor=dataclasses.replace(r.mentor, test_correct=right(0, 1, 2, 3))))
        r = by_mentor("A", "FixMatch", 0.9, 0.95, seed, 0.1)
        records.append(dataclasses.replace(r, mentor=dataclasses.replace(r.mentor, test_correct=right(seed))))
    space = dataclasses.replace(summary(records, ("split.mentor_ratio", "seed", "mentor")),
                                config={"mentor": {"name": "Mentor"}})
    artifacts.write_json(space, str(tmp_path / SWEEP_FILE))
    for r in records:
        artifacts.write_json(r, str(tmp_path / "trials" / r.key / "trial.json"))
    text, _ = write_report(str(tmp_path))
    references = text[text.index("## Against the generation-0 mentor (Mentor)"):]
    fixmatch = row(references, "FixMatch")
    assert fixmatch[1:5] == ["0.1", "2", "95.00 ± 0.00", "+15.00"]  # 19 of 20 right against 16 of 20, each seed
    low, high = (float(x) for x in fixmatch[5].strip("[]").split(","))
    assert 0 < low < 15 < high  # the three images it alone gets right in each seed, resampled in pairs
    assert row(references, "Mentor")[4:] == ["–", "–"]
    assert row(references, "A ← FixMatch")[4:] == ["–", "–"]  # its trials kept no test answers (older files)


def test_a_grid_over_whole_mentors_names_each_mentor_in_the_gap_table(tmp_path):
    records = [dataclasses.replace(r, grid={**r.grid, "mentor": {"name": m, "architecture": "c-mp-fc2"}})
               for m in ("Mentor", "FixMatch") for r in [by_mentor("A", m, 0.9, 0.8, 0, 0.1)]]
    text, _ = write_report(sweep_folder(tmp_path, records, ("student", "mentor")))
    gaps = text[text.index("## Student − mentor accuracy"):]
    assert row(gaps, "A")[1] == "Mentor" and "FixMatch" in gaps and "architecture" not in gaps


def test_table_6_names_each_mentor_of_a_mentor_axis_once(tmp_path):
    records = [by_mentor("A", m, 0.9, 0.8, 0, 0.1) for m in ("Mentor", "Mentor-g1")]
    text, _ = write_report(sweep_folder(tmp_path, records, ("student", "mentor")))
    table = text[text.index("## Inference time on the whole test set (Table 6)"):]
    assert row(table, "Mentor (mentor)")[1:3] == ["0.0200", "1.00"] and row(table, "Mentor-g1 (mentor)")
    assert "Mentor Mentor" not in table
