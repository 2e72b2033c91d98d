"""Benchmark 3: what Ray adds. Student-A (Table 1) trained for 5 epochs on the
whole Fashion-MNIST student pool (48,000 images, soft labels) on Ray, against
the core loop alone doing the same work in this process: read the Parquet set,
train with a test evaluation after every epoch, evaluate, time inference.

Two Ray paths, each timed from the call to the result, start-up included, with
Ray started before the clock runs: a sweep's path for a single-worker run (one
Tune trial holding the worker's CPUs, training in its own process) and a Ray
Train worker group of one worker (the path of multi-worker runs). Also: each
path's start-up on 128 images for one epoch, and an empty Tune trial.

    python benchmarks/ray_overhead.py [--epochs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch
from ray import tune

from common import TABLE1, build, fashion_split, machine, print_table, seconds
from deepmimic.config import ResourcesConfig
from deepmimic.core import tables
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.evaluation import accuracy_and_loss, inference_time, predict_logits
from deepmimic.core.methods import METHODS
from deepmimic.core.soft_labels import soft_labels
from deepmimic.core.training import Training, train
from deepmimic.distributed.cluster import connect
from deepmimic.distributed.data import TableInfo, read_shard, write_image_table
from deepmimic.distributed.train import DataPlan, ModelPlan, Placement, RunSpec, fit


def student_set(folder: str) -> tuple[TableInfo, TableInfo]:
    """The pool with a briefly trained mentor's soft labels, and the test set, as the platform stores them."""
    data = fashion_split()
    mentor = build(TABLE1["Mentor"], (1, 28, 28), 10, data.mean, data.std)
    train(mentor, data.mentor_x, data.mentor_y, Training(epochs=1, batch_size=128))
    names = tuple(str(i) for i in range(10))
    ids = np.arange(len(data.pool_x))
    pool = write_image_table(f"{folder}/pool.parquet", data.pool_x.numpy(), ids, names)
    soft = tables.soft_label_table(ids, soft_labels(mentor, data.pool_x)).column("soft_label")
    table = tables.read(pool.uri).append_column("soft_label", soft)
    tables.write_table(table, f"{folder}/set.parquet")
    test = write_image_table(f"{folder}/test.parquet", data.test_x.numpy(), np.arange(len(data.test_x)), names,
                             data.test_y.numpy())
    return TableInfo(f"{folder}/set.parquet", len(ids), pool.shape, names, pool.mean, pool.std), test


def core_alone(info: TableInfo, test: TableInfo, spec: ModelSpec, hyper: Training) -> float:
    """The Ray worker's work without Ray; returns the final test accuracy."""
    x, y = (torch.from_numpy(a) for a in read_shard(info, "soft_label", 0, 1))
    t = tables.to_image_set(tables.read(test.uri), test.shape, test.class_names)
    tx, ty = torch.from_numpy(t.images), torch.from_numpy(t.labels)
    torch.manual_seed(0)
    model = spec.build(info.shape, 10, info.mean, info.std)
    scores = []
    train(model, x, y, hyper, lambda epoch, _: scores.append(accuracy_and_loss(predict_logits(model, tx), ty)))
    inference_time(model, tx, warm_up=False)  # as the worker times it, after its last test evaluation
    return scores[-1][0]


def empty_trial(config: dict) -> None:
    tune.report({"done": 1})


def in_trial(run: Callable[[bool], Any], resources: ResourcesConfig, folder: str) -> Any:
    """`run(in_process=True)` in one Tune trial holding the worker's CPUs, as a sweep runs it; its return value."""
    def trial(config: dict) -> None:
        tune.report({"out": run(True)})

    grid = tune.Tuner(tune.with_resources(trial, {"cpu": resources.cpus_per_worker}),
                      run_config=tune.RunConfig(storage_path=folder, verbose=0)).fit()
    return grid[0].metrics["out"]


def on_ray(path: str, name: str, spec: ModelSpec, hyper: Training, data: TableInfo, test: TableInfo,
           resources: ResourcesConfig, folder: str) -> tuple[float, float]:
    """Seconds (start-up included) and test accuracy of one run in a Tune trial (`trial`) or on a worker group."""
    def run(in_process: bool) -> float:
        spec_ = RunSpec(name, f"{folder}/ray", ModelPlan(spec, hyper, 0, METHODS["deepmimic"]()),
                        DataPlan(data, "soft_label", test, 10), Placement(resources, in_process=in_process))
        return fit(spec_).summary.test_accuracy

    start = time.perf_counter()
    acc = in_trial(run, resources, f"{folder}/tune") if path == "trial" else run(False)
    return time.perf_counter() - start, acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5,
                   help="rounds of core, trial and worker group, interleaved; medians shown")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine(torch.device("cpu")))
    spec, hyper = ModelSpec(TABLE1["Student-A"]), Training(epochs=args.epochs, batch_size=128, lr=0.05)
    resources = ResourcesConfig(num_workers=1, cpus_per_worker=args.threads, threads_per_worker=args.threads)
    with tempfile.TemporaryDirectory() as folder:
        info, test = student_set(folder)
        print(f"sizes: {info.rows} student images with soft labels, {test.rows} test images; "
              f"Student-A {spec.architecture}, "
              f"{args.epochs} epochs, batch 128, {args.threads} threads; Ray worker: {args.threads} CPUs")
        connect()
        small = TableInfo(f"{folder}/small.parquet", 128, info.shape, info.class_names, info.mean, info.std)
        tables.write_table(tables.read(info.uri).slice(0, 128), small.uri)
        # This VM's timings wander by 10-20% within minutes: rounds interleave the three paths, each path's ratio
        # is taken to the core run of its own round, and the medians over rounds are shown.
        accs, runs = {}, {k: [] for k in ("core", "trial", "group", "trial startup", "group startup")}
        for i in range(args.repeats):
            core = lambda: accs.__setitem__("core", core_alone(info, test, spec, hyper))  # noqa: E731
            runs["core"].append(seconds(core, torch.device("cpu")))
            for path in ("trial", "group"):
                t, accs[path] = on_ray(path, f"{path}-{i}", spec, hyper, info, test, resources, folder)
                runs[path].append(t)
                t, _ = on_ray(path, f"{path}-startup-{i}", spec, Training(epochs=1, batch_size=128), small, test,
                              resources, folder)
                runs[f"{path} startup"].append(t)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items())
                  + f"; trial/core {runs['trial'][-1] / runs['core'][-1]:.3f}, "
                  + f"group/core {runs['group'][-1] / runs['core'][-1]:.3f}",
                  flush=True)
        times = {k: statistics.median(v) for k, v in runs.items()}
        ratio = {path: statistics.median(t / c for t, c in zip(runs[path], runs["core"]))
                 for path in ("trial", "group")}
        t_core = times["core"]
        start = time.perf_counter()
        tune.Tuner(tune.with_resources(empty_trial, {"cpu": 0.25}),
                   run_config=tune.RunConfig(storage_path=f"{folder}/tune", verbose=0)).fit()
        t_trial = time.perf_counter() - start

    print_table(f"Ray overhead (medians of {args.repeats} rounds)",
                ["run", "seconds", "test acc", "ratio to its round's core run"], [
        ["core loop alone (same process)", round(t_core, 2), accs["core"], 1.0],
        ["Tune trial training in its own process (a sweep's single-worker run)", round(times["trial"], 2),
         accs["trial"], round(ratio["trial"], 3)],
        ["Ray Train worker group of 1 (multi-worker runs' path)", round(times["group"], 2), accs["group"],
         round(ratio["group"], 3)],
        ["start-up, Tune trial: 128 images, 1 epoch, the whole test set evaluated", round(times["trial startup"], 2),
         "", ""],
        ["start-up, Ray Train worker group: the same", round(times["group startup"], 2), "", ""],
        ["Tune: one empty trial", round(t_trial, 2), "", ""],
    ])


if __name__ == "__main__":
    main()
