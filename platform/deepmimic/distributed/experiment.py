"""One experiment on Ray: split → mentor → soft labels → students → result.json."""

from __future__ import annotations

import os
import time

from ..config import ExperimentConfig
from ..core import artifacts, tables
from ..core.images import Dataset
from ..core.results import ExperimentResult, Sizes
from ..core.splits import Split
from .stages import mentor_folder, mentor_key, prepare_pool, student_set, train_mentor, train_student


def run_experiment(cfg: ExperimentConfig, out_dir: str, dataset: Dataset | None = None,
                   split: Split | None = None) -> ExperimentResult:
    """Run one mentor and its students on the connected Ray cluster; write and return result.json.

    `dataset` and `split` may be given to bypass loading and splitting (tests do).
    """
    out_dir = out_dir if artifacts.is_uri(out_dir) else os.path.abspath(out_dir)
    if cfg.pool_separate:
        prepare_pool(cfg, out_dir)
    mentor = train_mentor(cfg, mentor_folder(out_dir, mentor_key(cfg)), dataset, split)
    timings = dict(mentor.result.stage_times_s)
    start = time.perf_counter()
    data = student_set(cfg, mentor)
    timings["student_set"] = round(time.perf_counter() - start, 3)
    students = []
    for model in cfg.students:
        start = time.perf_counter()
        students.append(train_student(cfg, model, mentor, data, f"{out_dir}/students/{model.name}"))
        timings[f"student:{model.name}"] = round(time.perf_counter() - start, 3)
    pool = mentor.student.rows if mentor.student else data.pool
    sizes = Sizes(tables.read(f"{mentor.folder}/data/mentor.parquet", ["id"]).num_rows, pool, mentor.test.rows,
                  data.unreadable)
    result = ExperimentResult(cfg.name, cfg.dataset.name, cfg.split.mentor_ratio, cfg.seed, sizes, mentor.result,
                              tuple(students), timings)
    artifacts.write_json(result, f"{out_dir}/result.json")
    return result
