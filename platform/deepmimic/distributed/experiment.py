"""One experiment on Ray: split → mentor → soft labels → students → result.json."""

from __future__ import annotations

import os

from ..config import ExperimentConfig
from ..core import artifacts, tables
from ..core.images import Dataset
from ..core.results import ExperimentResult, Sizes
from ..core.splits import Split
from .keys import mentor_key, student_key
from .mentor_folder import MentorFolder
from .mentor_stage import train_mentor
from .student_stage import prepare_pool, student_set, train_student
from .timing import Stopwatch


def run_experiment(cfg: ExperimentConfig, out_dir: str, dataset: Dataset | None = None,
                   split: Split | None = None) -> ExperimentResult:
    """Run one mentor and its students on the connected Ray cluster; write and return result.json.

    `dataset` and `split` may be given to bypass loading and splitting (tests do).
    """
    out_dir = out_dir if artifacts.is_uri(out_dir) else os.path.abspath(out_dir)
    if cfg.pool_separate:
        prepare_pool(cfg, out_dir)
    mentor = train_mentor(cfg, MentorFolder.at(out_dir, mentor_key(cfg)), dataset, split)
    watch = Stopwatch(dict(mentor.result.stage_times_s))
    with watch("student_set"):
        data = student_set(cfg, mentor)
    students = []
    for model in cfg.students:
        with watch(f"student:{model.name}"):
            # Keyed by what determines it: a changed experiment in the same folder trains afresh (under the name
            # alone, its student resumed the last experiment's finished run), a rerun of the same one resumes.
            folder = f"{out_dir}/students/{model.name}/{student_key(cfg, model)}"
            students.append(train_student(cfg, model, mentor, data, folder))
    pool = mentor.pool.rows if mentor.pool else data.pool
    sizes = Sizes(tables.read(mentor.files.mentor_table, ["id"]).num_rows, pool, mentor.test.rows, data.unreadable)
    result = ExperimentResult(cfg.name, cfg.dataset.name, cfg.split.mentor_ratio, cfg.seed, sizes, mentor.result,
                              tuple(students), watch.times)
    artifacts.write_json(result, f"{out_dir}/result.json")
    return result
