"""Streaming at size: a synthetic student set (28×28 images and soft labels) grown 1×, 4×, 16×.

For each size, one epoch of a small student in a fresh Ray worker process (`max_calls=1`, so its peak
RSS is its own): streamed through Ray Data (`distributed/streaming.py`) and, as the baseline measured
in the same run, held in memory (`read_shard` + the device-resident loop). Then soft-labelling the
1× pool by Ray Data batch inference with 1 and 2 actors (`distributed/pool.label`).

Goals (issue 16): a streaming worker's peak RSS within 1.3× from 1× to 16×; streaming images/s at
least 0.8× in-memory's.

    python benchmarks/streaming.py [--base 125000] [--factors 1 4 16] [--batch 256] [--read-ahead-mib 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from common import machine, print_table
from deepmimic.config import DataConfig, ResourcesConfig
from deepmimic.core import artifacts, checkpoints, tables
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.batches import InMemory
from deepmimic.core.optimizer import SGD
from deepmimic.core.training import Training, train_on
from deepmimic.distributed.cluster import connect
from deepmimic.distributed.data import TableInfo, read_shard
from deepmimic.distributed.pool import label
from deepmimic.distributed.streaming import Streamed

SHAPE, CLASSES, ROWS_PER_FILE = (1, 28, 28), 10, 65_536
STUDENT = ModelSpec("c-fc", width=4)


def write_set(folder: Path, rows: int) -> TableInfo:
    """`rows` random images with soft labels, in Parquet files of ROWS_PER_FILE rows (as Ray Data writes sets)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, rows - start)
        ids = np.arange(start, start + n)
        images = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
        soft = rng.dirichlet(np.ones(CLASSES), n).astype(np.float32)
        table = tables.image_table(images, ids).append_column(
            "soft_label", tables.soft_label_table(ids, soft).column("soft_label"))
        pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=8192)
    artifacts.seal(str(folder), rows)
    return TableInfo(str(folder), rows, SHAPE, tuple(map(str, range(CLASSES))), [127.5], [73.9])


class PeakPrivate:
    """The peak of this process's private resident memory (RssAnon), sampled every 20 ms. Peak RSS (VmHWM)
    also counts the object store's shared pages a streaming reader has touched, which are Ray's, not its."""

    def __init__(self) -> None:
        self.peak, self.running = 0, True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            with open("/proc/self/status") as f:
                anon = next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
            self.peak = max(self.peak, anon)
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        return self.peak / 1024


def one_epoch(info: TableInfo, streamed: bool, batch: int, read_ahead: int | None = None) -> dict[str, float]:
    """One epoch in this (fresh) process: load seconds, images/s, peak RSS and peak private RSS in MiB."""
    private = PeakPrivate()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if streamed:
        data = Streamed(info, "soft_label", batch, 0, 1, torch.device("cpu"), 0.5, reserved=True, read_ahead=read_ahead)
    else:
        images, targets = read_shard(info, "soft_label", 0, 1)
        data = InMemory(torch.from_numpy(images), torch.from_numpy(targets), batch)
    loaded = time.perf_counter() - start
    net = STUDENT.build(SHAPE, CLASSES, info.mean, info.std)
    start = time.perf_counter()
    train_on(net, data, Training(epochs=1, batch_size=batch, bf16=False))
    seconds = time.perf_counter() - start
    return {"load_s": loaded, "images_per_s": info.rows / seconds, "peak_private_mib": private.stop(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_worker(ray, info: TableInfo, streamed: bool, batch: int,
                    read_ahead: int | None = None) -> dict[str, float]:
    """`one_epoch` in a new Ray worker holding 1 CPU, with 0.5 more reserved for its reads (as `fit` does)."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"CPU": 1}, {"CPU": 0.5}])
    ray.get(group.ready())
    try:
        task = ray.remote(max_calls=1)(one_epoch).options(num_cpus=1,
                                             scheduling_strategy=PlacementGroupSchedulingStrategy(
                                                 group, placement_group_bundle_index=0,
                                                 placement_group_capture_child_tasks=True))
        return ray.get(task.remote(info, streamed, batch, read_ahead))
    finally:
        remove_placement_group(group)


def labelling(ray, info: TableInfo, folder: Path, actors: int) -> float:
    """Images/s of Ray Data batch inference over the set's images with `actors` actors of 0.75 CPU each
    (two of them and the reads fit a 2-CPU node)."""
    from ray.train import Checkpoint

    spec = ModelSpec("c-mp-c-mp-fc2")
    mentor = spec.build(SHAPE, CLASSES, info.mean, info.std)
    ckpt = folder / "mentor"
    ckpt.mkdir(exist_ok=True)
    meta = {"spec": dataclasses.asdict(spec), "shape": list(SHAPE), "num_classes": CLASSES, "mean": info.mean,
            "std": info.std}
    checkpoints.save(str(ckpt), mentor, SGD(mentor.parameters(), lr=0.1), 1, [], meta)
    seconds = label(Checkpoint.from_directory(str(ckpt)), info, str(folder / f"soft-{actors}"),
                    ResourcesConfig(cpus_per_worker=0.75), actors)
    return info.rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=125_000, help="images at 1× (16× of 125,000: 2 million)")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--read-ahead-mib", type=int, default=DataConfig().read_ahead // 2**20,
                        help="`data.read_ahead` of the streamed runs (default: the config's; 0: Ray Data's budget)")
    args = parser.parse_args()
    import ray

    connect()
    print(machine(torch.device("cpu")), file=sys.stderr)
    rows, label_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.factors:
            info = write_set(Path(tmp) / f"set-{factor}", args.base * factor)
            memory = in_fresh_worker(ray, info, False, args.batch)
            stream = in_fresh_worker(ray, info, True, args.batch, args.read_ahead_mib * 2**20 or None)
            rows.append([f"{factor}×", f"{info.rows:,}", f"{info.rows * 824 / 2**30:.2f}",
                         f"{memory['peak_rss_mib']:.0f}", f"{stream['peak_rss_mib']:.0f}",
                         f"{memory['peak_private_mib']:.0f}", f"{stream['peak_private_mib']:.0f}",
                         f"{memory['images_per_s']:,.0f}", f"{stream['images_per_s']:,.0f}",
                         f"{stream['images_per_s'] / memory['images_per_s']:.2f}",
                         f"{memory['load_s']:.1f}", f"{stream['load_s']:.1f}"])
            if factor == args.factors[0]:
                label_rows = [[str(a), f"{labelling(ray, info, Path(tmp), a):,.0f}"] for a in (1, 2)]
            print(rows[-1], file=sys.stderr, flush=True)
        first, first_private = float(rows[0][4]), float(rows[0][6])
        for row in rows:
            row += [f"{float(row[4]) / first:.2f}", f"{float(row[6]) / first_private:.2f}"]
    print_table("One student epoch (c-fc, width 4, batch {}), in a fresh worker each".format(args.batch),
                ["pool", "images", "GiB", "peak RSS MiB in memory", "peak RSS MiB streamed",
                 "private MiB in memory", "private MiB streamed", "img/s in memory", "img/s streamed",
                 "streamed / in memory", "load s in memory", "load s streamed", "streamed RSS / 1×",
                 "streamed private / 1×"], rows)
    print_table("Soft labelling by Ray Data batch inference (c-mp-c-mp-fc2 mentor, 0.75 CPU an actor), the 1× pool",
                ["actors", "images/s"], label_rows)


if __name__ == "__main__":
    main()
