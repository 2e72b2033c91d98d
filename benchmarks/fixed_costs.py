"""Fixed costs: `deepmimic sweep` of the quickstart at one epoch against the same work — loading and
splitting, training (with its evaluations), soft labels, inference timing — done by the core in one
plain Python process, measured in the same run; then where the difference goes.

The sweep runs as a user runs it: a fresh `deepmimic` process that starts its own local Ray, with a
fresh output folder and cache each round. Its driver prints its stages' seconds; the trials' own
records give the training inside them. Last, the same sweep joining a Ray that stays up between sweeps,
and the CPU the sweep used (the whole machine's, from /proc/stat) against what its processes' starts
alone cost: the floor any sweep of fresh processes stands on.

    python benchmarks/fixed_costs.py [--epochs 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from common import deepmimic, fit_as_a_worker, machine, print_table
from deepmimic.config import load_sweep
from deepmimic.core.datasets import load_dataset
from deepmimic.core.evaluation import predict_logits
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.splits import stratified_split

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
IMPORTS = ("import deepmimic.cli, deepmimic.distributed.sweep, deepmimic.distributed.mentor_stage, "
           "deepmimic.distributed.student_stage")
# What each kind of process imports before it does any work: a trial process (Tune's function trainable, the
# sweep's trial functions, the class of the tracker's actor it holds a handle on) and the tracker's actor
# (MLflow's client, SQL store and PyTorch flavour).
TRIAL_IMPORTS = "import ray.tune.trainable.function_trainable, deepmimic.distributed.sweep, deepmimic.tracking"
TRACKER_IMPORTS = ("import deepmimic.tracking, mlflow.tracking, mlflow.pytorch, "
                   "mlflow.store.tracking.sqlalchemy_store")


def bare_work(epochs: int, device: torch.device) -> float:
    """The sweep's computations, one after another in this process: seconds (no Ray needed)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    _, points = load_sweep(QUICKSTART, [f"training.epochs={epochs}"])
    dataset = load_dataset("digits")
    test_x, test_y = torch.from_numpy(dataset.test.images).to(device), torch.from_numpy(dataset.test.labels).to(device)
    pools = {}  # a mentor per split ratio and seed, as the sweep's cache keys them
    for _, cfg in points:
        made = (cfg.split.mentor_ratio, cfg.seed)
        if made not in pools:
            split = stratified_split(dataset.train.labels, cfg.split.mentor_ratio, cfg.seed)
            mentor = fit_as_a_worker(cfg.mentor, dataset.train.images[split.mentor], torch.from_numpy(
                dataset.train.labels[split.mentor]).to(device), test_x, test_y, cfg.seed)
            pool = dataset.train.images[split.student]
            pools[made] = (pool, torch.from_numpy(soft_labels(mentor, torch.from_numpy(pool).to(device))).to(device))
            predict_logits(mentor, test_x)  # the mentor's test predictions
        for student in cfg.students:
            fit_as_a_worker(student, pools[made][0], pools[made][1], test_x, test_y, cfg.seed)
    sync()
    return time.perf_counter() - start


def machine_cpu_s() -> float:
    """CPU seconds every process of this machine has used since it booted (user, nice, system: Ray runs its
    workers niced), from /proc/stat; NaN where there is none."""
    try:
        with open("/proc/stat") as f:
            user, nice, system = (int(v) for v in f.readline().split()[1:4])
    except OSError:
        return float("nan")
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def import_cpu_s(code: str) -> float:
    """CPU seconds a fresh Python takes to start and run `code` (its imports)."""
    before = os.times()
    subprocess.run([sys.executable, "-c", code], check=True)
    after = os.times()
    return after.children_user + after.children_system - before.children_user - before.children_system


@dataclass(frozen=True)
class SweepRun:
    wall_s: float
    stages: dict[str, float]       # the driver's stage seconds, as it prints them
    inside: dict[str, float]       # work measured inside the trials, summed over them
    machine_cpu_s: float           # CPU seconds every process of the machine used meanwhile
    trial_processes: int           # processes Tune ran trials in (its records name each trial's)


def sweep_once(epochs: int, folder: str, ray_address: str | None = None) -> SweepRun:
    """One `deepmimic sweep` of the quickstart, on its own local Ray or joining `ray_address`."""
    cpu = machine_cpu_s()
    wall, proc = deepmimic("sweep", str(QUICKSTART), "--set", f"training.epochs={epochs}", "--out", f"{folder}/out",
                           "--cache", f"{folder}/cache", ray_address=ray_address)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("driver stage times (s): "))
    stages = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in line.split(": ", 1)[1].split(", "))}
    inside = {"mentor load and split": 0.0, "mentor training": 0.0, "soft labels": 0.0, "student training": 0.0}
    for path in Path(folder, "cache").glob("mentors/*/mentor.json"):
        result = json.loads(path.read_text())["result"]
        inside["mentor load and split"] += result["stage_times_s"]["load_and_split"]
        inside["mentor training"] += result["train_time_s"]
        inside["soft labels"] += result["stage_times_s"]["soft_labels"]
    for path in Path(folder, "out").glob("trials/*/trial.json"):
        inside["student training"] += json.loads(path.read_text())["student"]["train_time_s"]
    files = (Path(folder, "out", "tune", f"{name}.json") for name in ("trials", "mentors", "students"))  # Tune's
    reported = [json.loads(p.read_text()) for p in files if p.exists()]
    pids = {trial["pid"] for stage in reported for trial in stage}
    return SweepRun(wall, stages, inside, machine_cpu_s() - cpu, len(pids))


def one_point(command: str, epochs: int, folder: str) -> float:
    """Wall seconds of `deepmimic run` or `deepmimic sweep` of the quickstart's base point alone (no grid:
    1 mentor, 2 students), a fresh process each."""
    no_grid = "grid={}" if command == "sweep" else "grid=null"  # a sweep of no axes; `run` refuses the key
    args = [command, str(QUICKSTART), "--set", no_grid, "--set", f"training.epochs={epochs}",
            "--out", f"{folder}/{command}"]
    args += ["--cache", f"{folder}/cache"] if command == "sweep" else []
    return deepmimic(*args)[0]


def running_ray(epochs: int, rounds: int) -> float:
    """Median wall seconds of the quickstart's sweep joining a Ray this process keeps running, as on a workstation
    where `ray start --head` ran once (each sweep still a fresh process, with fresh trial processes)."""
    import ray

    ray.init(address="local", include_dashboard=True, logging_level="WARNING")
    try:
        walls = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as folder:
                walls.append(sweep_once(epochs, folder, ray.get_runtime_context().gcs_address).wall_s)
        return statistics.median(walls)
    finally:
        ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="rounds of core and sweep, interleaved; medians shown")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    print(machine(device))
    bare_work(args.epochs, device)  # first-use costs (kernels, the data set's files) paid once, not timed
    if importlib.util.find_spec("ray") is None:  # a GPU machine with PyTorch alone: the core's side only
        times = [bare_work(args.epochs, device) for _ in range(args.rounds)]
        print_table("The bare work alone (no Ray here: the sweep's side is not measured)", ["run", "seconds"],
                    [["the quickstart's work in one plain process (core)", round(statistics.median(times), 2)]])
        return
    imports, starts = [], {"the CLI": [], "a trial process": [], "the tracker": []}
    for _ in range(3):
        start = time.perf_counter()
        starts["the CLI"].append(import_cpu_s(IMPORTS))
        imports.append(time.perf_counter() - start)
        starts["a trial process"].append(import_cpu_s(TRIAL_IMPORTS))
        starts["the tracker"].append(import_cpu_s(TRACKER_IMPORTS))
    cores, core_cpus, sweeps, runs, points = [], [], [], [], []
    for i in range(args.rounds):
        cpu = time.process_time()
        cores.append(bare_work(args.epochs, device))
        core_cpus.append(time.process_time() - cpu)
        with tempfile.TemporaryDirectory() as folder:
            sweeps.append(sweep_once(args.epochs, folder))
            runs.append(one_point("run", args.epochs, folder))
            points.append(one_point("sweep", args.epochs, folder))
        print(f"round {i + 1}: core {cores[-1]:.2f} s, sweep {sweeps[-1].wall_s:.2f} s; one point: "
              f"run {runs[-1]:.2f} s, sweep {points[-1]:.2f} s", flush=True)
    core, wall = statistics.median(cores), statistics.median(s.wall_s for s in sweeps)
    med = {k: statistics.median(s.stages[k] for s in sweeps) for k in sweeps[0].stages}
    inside = {k: statistics.median(s.inside[k] for s in sweeps) for k in sweeps[0].inside}
    _, grid = load_sweep(QUICKSTART)
    mentors = len({(cfg.split.mentor_ratio, cfg.seed) for _, cfg in grid})
    print(f"quickstart at {args.epochs} epoch(s): {mentors} mentors, {len(grid)} student trials; medians of "
          f"{args.rounds} rounds")
    rows = [["the same work in one plain process (core)", round(core, 2), 1.0],
            ["`deepmimic sweep`, a fresh process, wall", round(wall, 2), round(wall / core, 2)]]
    print_table("Sweep against the bare work", ["run", "seconds", "ratio to core"], rows)
    run, point = statistics.median(runs), statistics.median(points)
    print_table("The base point alone (1 mentor, 2 students): `deepmimic run` against a sweep of it",
                ["command", "seconds", "ratio to the sweep"],
                [["`deepmimic sweep --set grid={}`", round(point, 2), 1.0],
                 ["`deepmimic run --set grid=null`", round(run, 2), round(run / point, 2)]])
    joined = running_ray(args.epochs, args.rounds)
    print_table("Against a Ray already running (`ray start` once, then each sweep joins it through RAY_ADDRESS)",
                ["run", "seconds", "ratio to core"],
                [["`deepmimic sweep`, a fresh process joining a running Ray", round(joined, 2),
                  round(joined / core, 2)]])
    t_imports = statistics.median(imports)
    rest = wall - sum(med.values()) - t_imports
    rows = [["Python start and imports (measured apart)", round(t_imports, 2), ""]]
    rows += [[f"driver: {k}", v, ""] for k, v in med.items()]
    rows.append(["config, data check, Ray shutdown, exit (the rest)", round(rest, 2), ""])
    rows += [[f"inside trials: {k}", round(v, 2), "summed over trials"] for k, v in inside.items()]
    print_table("Where the sweep's seconds go", ["stage", "seconds", "note"], rows)
    start = {k: statistics.median(v) for k, v in starts.items()}
    cpu_sweep, procs = statistics.median(s.machine_cpu_s for s in sweeps), max(s.trial_processes for s in sweeps)
    floor = start["the CLI"] + start["the tracker"] + procs * start["a trial process"]
    cores_n, core_cpu = os.cpu_count() or 1, statistics.median(core_cpus)
    rows = [["the same work in one plain process (core)", round(core_cpu, 2), ""],
            ["the whole machine during `deepmimic sweep`", round(cpu_sweep, 2), f"{wall:.2f} s of wall"]]
    rows += [[f"start and imports of {k}", round(v, 2), "measured apart, a fresh Python"] for k, v in start.items()]
    rows.append([f"starts alone: the CLI, the tracker, {procs:g} trial processes", round(floor, 2),
                 f"at least {floor / cores_n:.2f} s on {cores_n} cores: {floor / cores_n / core:.1f}x the core's "
                 "wall"])
    print_table("CPU seconds: the sweep against the floor its processes' starts set", ["what", "CPU seconds", "note"],
                rows)


if __name__ == "__main__":
    main()
