"""What a sweep costs per trial: the quickstart's mentor and N students `c-mp-fc2` at widths 8 … 8+N−1
(2 epochs each), through `deepmimic sweep` (a fresh process on its own local Ray, fresh folders) and through
one plain Python process looping over the same trainings with the core, at each N, in the same run. A line
through (N, wall) gives each way's slope (seconds per added student) and intercept; then, per student
trial, where the sweep's seconds go.

    python benchmarks/scaling.py [--students 8 32 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from common import deepmimic, fit_as_a_worker, machine, print_table
from deepmimic.config import parse_experiment
from deepmimic.core.datasets import load_dataset
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.splits import stratified_split

ROOT = Path(__file__).resolve().parents[1]
STUDENT = {"name": "Student", "architecture": "c-mp-fc2", "training": {"epochs": 2}}


def space(students: int) -> dict:
    """The quickstart's first point (its mentor, seed 0, split 0.2) with a width axis over one student."""
    quickstart = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    return {**quickstart, "name": f"scaling_{students}", "students": [STUDENT],
            "grid": {"students.0.width": list(range(8, 8 + students))}}


def plain(students: int) -> float:
    """Wall seconds of the same work in this process: the mentor, its soft labels, each student in turn."""
    start = time.perf_counter()
    cfg = parse_experiment({k: v for k, v in space(students).items() if k != "grid"})
    data = load_dataset("digits")
    split = stratified_split(data.train.labels, cfg.split.mentor_ratio, cfg.seed)
    test_x, test_y = torch.from_numpy(data.test.images), torch.from_numpy(data.test.labels)
    mentor = fit_as_a_worker(cfg.mentor, data.train.images[split.mentor],
                             torch.from_numpy(data.train.labels[split.mentor]), test_x, test_y, cfg.seed)
    pool = data.train.images[split.student]
    targets = torch.from_numpy(soft_labels(mentor, torch.from_numpy(pool)))
    predict_logits(mentor, test_x)
    for width in range(8, 8 + students):
        fit_as_a_worker(cfg.students[0].model_copy(update={"width": width}), pool, targets, test_x, test_y, cfg.seed)
    return time.perf_counter() - start


def swept(students: int, folder: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of `deepmimic sweep` of the same work, and where its student trials' seconds went."""
    path = Path(folder, "space.yaml")
    path.write_text(yaml.safe_dump(space(students), sort_keys=False))
    wall, proc = deepmimic("sweep", str(path), "--out", f"{folder}/out", "--cache", f"{folder}/cache")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("driver stage times (s): "))
    stages = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in line.split(": ", 1)[1].split(", "))}
    trained = [json.loads(p.read_text())["student"]["train_time_s"]
               for p in Path(folder, "out").glob("trials/*/trial.json")]
    # Tune's records: the seconds each student trial's function ran, in its trial process
    reported = json.loads(Path(folder, "out", "tune", "trials.json").read_text())  # one round: mentors and students
    ran = [trial["time_total_s"] for trial in reported if trial["job"].startswith("student:")]
    return wall, {**stages, "training": sum(trained), "trial functions": sum(ran)}


def line(ns: list[int], walls: list[float]) -> tuple[float, float]:
    slope, intercept = np.polyfit(ns, walls, 1)
    return float(slope), float(intercept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--rounds", type=int, default=2, help="rounds over every N, interleaved; medians shown")
    args = p.parse_args()
    print(machine(torch.device("cpu")))
    plain(2)  # first-use costs (kernels, the data set's file) paid once, not timed
    walls: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in args.students}
    parts: dict[int, dict[str, float]] = {}
    for i in range(args.rounds):
        for n in args.students:
            walls[n][0].append(plain(n))
            with tempfile.TemporaryDirectory() as folder:
                wall, parts[n] = swept(n, folder)
            walls[n][1].append(wall)
            print(f"round {i + 1}, N={n}: plain {walls[n][0][-1]:.2f} s, sweep {wall:.2f} s", flush=True)
    plains = [statistics.median(walls[n][0]) for n in args.students]
    sweeps = [statistics.median(walls[n][1]) for n in args.students]
    rows = [[n, round(a, 2), round(b, 2), round(b / a, 2)] for n, a, b in zip(args.students, plains, sweeps)]
    print_table(f"Wall seconds at each N (medians of {args.rounds} rounds)",
                ["students", "plain process", "`deepmimic sweep`", "ratio"], rows)
    (ps, pi), (ss, si) = line(args.students, plains), line(args.students, sweeps)
    goal = 1.1 * ps + 0.2
    print_table("Per added student (a line through the points)", ["", "slope s/student", "intercept s"],
                [["plain process", round(ps, 3), round(pi, 2)], ["`deepmimic sweep`", round(ss, 3), round(si, 2)],
                 ["goal: sweep slope ≤ 1.1 × plain + 0.2", round(goal, 3), ""]])
    print(f"sweep slope {ss:.3f} s against the goal's {goal:.3f} s: {'met' if ss <= goal else 'not met'}")
    n = max(args.students)
    per = {k: v / n for k, v in parts[n].items() if k not in ("Ray start", "mentor trials", "student sets")}
    rows = [[k, round(v, 3)] for k, v in per.items()]
    print_table(f"Seconds per student trial at N={n}, last round: the driver's stages (wall) and, summed over "
                f"the trials ({os.cpu_count()} at once here), their training and their whole trial functions",
                ["what", "seconds per trial"], rows)


if __name__ == "__main__":
    main()
