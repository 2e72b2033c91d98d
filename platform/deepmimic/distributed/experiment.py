"""One experiment on Ray: split → mentor → soft labels → students → result.json."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from ..config import ExperimentConfig, ModelConfig
from ..core import tables
from ..core.datasets import load_dataset
from ..core.evaluation import agreement
from ..core.images import Dataset
from ..core.splits import Split, stratified_split
from .data import write_split
from .soft_labeling import label_pool
from .train import Resources, Trained, fit


def _model_result(model: ModelConfig, trained: Trained) -> dict[str, Any]:
    s = trained.summary
    return {
        "name": model.name,
        "architecture": model.architecture,
        "params": s["params"],
        "test_accuracy": s["test_accuracy"],
        "test_loss": s["test_loss"],
        "inference_time_s": s["inference_time_s"],
        "device": s["device"],
        "confusion_matrix": s["confusion"],
        "checkpoint": trained.checkpoint.path,
        "history": s["history"],
    }


def run_experiment(cfg: ExperimentConfig, out_dir: str, dataset: Dataset | None = None,
                   split: Split | None = None) -> dict[str, Any]:
    """Run one mentor and its students on the connected Ray cluster; write and return result.json.

    `dataset` and `split` may be given to bypass loading and splitting (tests do).
    """
    out_dir = os.path.abspath(out_dir) if "://" not in out_dir else out_dir
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    dataset = dataset or load_dataset(cfg.dataset.name, cfg.dataset.root)
    lap("load")
    split = split or stratified_split(dataset.train.labels, cfg.split.mentor_ratio, cfg.seed)
    data = write_split(dataset, split, f"{out_dir}/data")
    lap("split")

    res = Resources(**cfg.resources.model_dump())
    storage = f"{out_dir}/ray"
    classes = dataset.train.num_classes

    def train_one(model: ModelConfig, role: str, info: Any, target: str) -> Trained:
        return fit(f"{role}-{model.name}", model.spec(), model.training.hyper(cfg.seed), info, target,
                   data.test, classes, res, storage, cfg.inference_repeats)

    mentor = train_one(cfg.mentor, "mentor", data.mentor, "label")
    lap("mentor")
    student_data = label_pool(mentor.checkpoint, data.student, f"{out_dir}/data", res)
    lap("soft_labels")

    students = []
    for model in cfg.students:
        trained = train_one(model, "student", student_data, "soft_label")
        row = _model_result(model, trained)
        row["relative_accuracy"] = row["test_accuracy"] / mentor.summary["test_accuracy"]
        row["agreement"] = agreement(trained.test_predictions, mentor.test_predictions)
        students.append(row)
        lap(f"student:{model.name}")

    result = {
        "name": cfg.name,
        "dataset": cfg.dataset.name,
        "split_ratio": cfg.split.mentor_ratio,
        "seed": cfg.seed,
        "sizes": {"mentor": len(split.mentor), "student": len(split.student), "test": len(dataset.test)},
        "mentor": _model_result(cfg.mentor, mentor),
        "students": students,
        "timings_s": timings,
    }
    write_json(result, f"{out_dir}/result.json")
    return result


def write_json(obj: Any, uri: str) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    fs, path = tables.filesystem(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(obj, indent=2, default=_plain).encode())
    fs.move(tmp, path)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
