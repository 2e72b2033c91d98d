"""Benchmark 4: a whole sweep (1 mentor, 4 students on Fashion-MNIST) against
its own stages run one after another with the core loop alone in this
process, and against the no-reuse baseline (the mentor trained again, and the
pool labelled again, for every student).

The sweep runs through `run_sweep` on a local Ray started before the clock,
with a fresh cache, so its mentor is trained once. The core stages do the same
work: load and split, train the mentor, label the pool, train each student,
each run evaluating the test set after every epoch. The no-reuse baseline is
measured on Ray too: one sweep per student, each with a fresh cache, so the
mentor is trained and the pool labelled again for every student.

The sweep's trials hold 2 CPUs and train with 2 threads, as the core loop does,
so they run one after another as the stages do; each training run is 5 epochs,
as in the Ray overhead benchmark (`--epochs 2` shows the fixed costs larger).

    python benchmarks/sweep_reuse.py [--epochs 5] [--cpus-per-worker 2 --threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import yaml

from common import FASHION, TABLE1, build, fashion_split, machine, print_table
from deepmimic.config import load_sweep
from deepmimic.core.evaluation import accuracy_and_loss, inference_time, predict_logits
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.training import Training, train
from deepmimic.distributed.cluster import connect
from deepmimic.distributed.sweep import run_sweep

STUDENTS = {"Student-A": TABLE1["Student-A"], "Student-B": TABLE1["Student-B"],
            "Student-C": "c-mp-c-mp-fc", "Student-D": "c-mp-c-fc2"}


def core_stages(epochs: int) -> dict[str, float]:
    """Every stage of the sweep, one after another, with the core loop alone, doing the
    sweep's work: each model scored on the test set after every epoch and its test-set
    inference timed once (`inference_repeats: 1`), the mentor labelling the pool and the test set."""
    times, clock = {}, time.perf_counter()
    data = fashion_split()
    times["load and split"], clock = time.perf_counter() - clock, time.perf_counter()
    hyper = Training(epochs=epochs, batch_size=128, lr=0.05)

    def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        def evaluate(epoch: int, train: dict[str, float]) -> None:
            accuracy_and_loss(predict_logits(model, data.test_x), data.test_y)

        train(model, x, y, hyper, evaluate)
        inference_time(model, data.test_x, 1, warm_up=False)

    mentor = build(TABLE1["Mentor"], (1, 28, 28), 10, data.mean, data.std)
    fit(mentor, data.mentor_x, data.mentor_y)
    times["mentor"], clock = time.perf_counter() - clock, time.perf_counter()
    soft = torch.from_numpy(soft_labels(mentor, data.pool_x))
    soft_labels(mentor, data.test_x)
    times["soft labels"], clock = time.perf_counter() - clock, time.perf_counter()
    for name, arch in STUDENTS.items():
        fit(build(arch, (1, 28, 28), 10, data.mean, data.std), data.pool_x, soft)
        times[name], clock = time.perf_counter() - clock, time.perf_counter()
    return times


def search_space(epochs: int, cpus: float, threads: int) -> dict:
    return {
        "name": "bench_sweep", "seed": 0, "dataset": {"name": "fashion_mnist", "root": FASHION},
        "split": {"mentor_ratio": 0.2}, "training": {"epochs": epochs, "batch_size": 128, "lr": 0.05},
        "mentor": {"name": "Mentor", "architecture": TABLE1["Mentor"]},
        "students": [{"name": n, "architecture": a} for n, a in STUDENTS.items()],
        "resources": {"num_workers": 1, "cpus_per_worker": cpus, "threads_per_worker": threads},
        "inference_repeats": 1, "grid": {"student": list(STUDENTS)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--cpus-per-worker", type=float, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads per training worker")
    p.add_argument("--repeats", type=int, default=2, help="rounds of core stages and sweep, interleaved; medians shown")
    args = p.parse_args()
    print(machine(torch.device("cpu")))
    print(f"sizes: mentor 12000 labelled, pool 48000, test 10000; {args.epochs} epochs, batch 128; "
          f"sweep workers {args.cpus_per_worker} CPU / {args.threads} threads, "
          f"core loop {torch.get_num_threads()} threads")
    connect()
    # This VM's speed wanders by 10-20% from minute to minute: rounds interleave stages and sweep, medians compared.
    cores, sweeps = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/space.yaml"
        with open(path, "w") as f:
            yaml.safe_dump(search_space(args.epochs, args.cpus_per_worker, args.threads), f)
        for i in range(args.repeats):
            cores.append(core_stages(args.epochs))
            base, points = load_sweep(path)
            start = time.perf_counter()
            counts = run_sweep(base, points, f"{folder}/out{i}", f"{folder}/out{i}").counts  # a fresh cache each round
            sweeps.append(time.perf_counter() - start)
            print(f"round {i + 1}: stages {sum(cores[-1].values()):.2f} s, sweep {sweeps[-1]:.2f} s", flush=True)
        start = time.perf_counter()
        for name in STUDENTS:
            base, points = load_sweep(path, [f"grid.student=[{name}]"])
            run_sweep(base, points, f"{folder}/alone/{name}", f"{folder}/alone/{name}")  # a cache of its own
        no_reuse = time.perf_counter() - start
    summed, t_sweep = statistics.median(sum(c.values()) for c in cores), statistics.median(sweeps)
    print_table("Core stages, one after another (medians)", ["stage", "seconds"],
                [[k, round(statistics.median(c[k] for c in cores), 2)] for k in cores[0]])
    print_table(f"Sweep against its stages (medians of {args.repeats} rounds) and against no reuse (once)",
                ["run", "seconds", "ratio to summed stages"], [
        ["stages summed (core loop alone)", round(summed, 2), 1.0],
        [f"sweep ({counts.mentors_trained} mentor trained, {counts.trials_run} student trials)", round(t_sweep, 2),
         round(t_sweep / summed, 3)],
        [f"no-reuse baseline ({len(STUDENTS)} sweeps of one student, each training its own mentor)", round(no_reuse, 2),
         round(no_reuse / summed, 3)],
    ])
    print(f"saving of the sweep against no reuse: {no_reuse - t_sweep:.1f} s ({1 - t_sweep / no_reuse:.1%})")


if __name__ == "__main__":
    main()
