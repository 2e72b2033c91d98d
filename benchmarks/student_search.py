"""What a student search costs against a full grid over the same space, and whether both find a student
of the same size meeting the target: `deepmimic sweep` of a search space as shipped (Optuna + smaller_first),
with Ray Tune's ASHA instead, and with `search.algorithm=grid search.scheduler=none` (every student once,
in full), sharing one mentor cache so the mentor is trained once. Goal: the search trains at most a
third of the grid's epochs.

    python benchmarks/student_search.py [--space search_spaces/digits_student_search.yaml] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import machine, print_table
from deepmimic.core.student_search import SearchSummary
from deepmimic.report import SEARCH_FILE

ROOT = Path(__file__).resolve().parents[1]


def run(space: str, out: Path, cache: Path, sets: list[str]) -> tuple[SearchSummary, float]:
    """One sweep in a fresh process and local Ray; its search summary and wall seconds."""
    args = [sys.executable, "-m", "deepmimic.cli", "sweep", space, "--out", str(out), "--cache", str(cache)]
    start = time.perf_counter()
    subprocess.run(args + [f"--set={s}" for s in sets], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return SearchSummary.from_json(json.loads((out / SEARCH_FILE).read_text())), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "digits_student_search.yaml"))
    parser.add_argument("--set", action="append", default=[], help="an override for both runs")
    args = parser.parse_args()
    print(machine(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        cache, rows = Path(tmp) / "cache", []
        runs = (("optuna + smaller_first", []), ("optuna + asha", ["search.scheduler=asha"]),
                ("grid", ["search.algorithm=grid", "search.scheduler=none"]))
        for label, extra in runs:
            found, seconds = run(args.space, Path(tmp) / label.replace(" + ", "-"), cache, args.set + extra)
            best = found.best
            rows.append([label, len(found.candidates), sum(c.stopped_early for c in found.candidates),
                         found.epochs_spent, found.met, f"{best.architecture} w{best.width}", best.params,
                         round(best.validation_relative, 4), round(seconds, 1)])
    print_table(f"Student search against the full grid: {Path(args.space).name} {' '.join(args.set)}",
                ["run", "students", "stopped early", "epochs", "met target", "answer", "parameters",
                 "validation relative", "wall s"], rows)
    grid = rows[-1]
    for row in rows[:-1]:
        print(f"{row[0]}: epochs / grid's {row[3] / grid[3]:.3f} (goal ≤ 0.333); answer {row[6]} parameters, "
              f"the grid's {grid[6]}")


if __name__ == "__main__":
    main()
