"""Students streamed through Ray Data: the same batches for the same (seed, epoch), equal steps on every
rank, and two streaming trials at once on a 2-CPU node, each with CPUs reserved for its reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from deepmimic.core import artifacts, tables
from deepmimic.distributed.data import TableInfo
from deepmimic.distributed.pacing import AT_ONCE_S, PAUSE_S, Paced
from deepmimic.distributed.streaming import Streamed, _batches

from .conftest import image_folder, imported_by_fresh_python, parquet_images, sweep

ROWS = 103


@pytest.fixture
def student_table(tmp_path) -> TableInfo:
    """A student set of ROWS rows in three files of several row groups; each image holds its own id."""
    ids = np.arange(ROWS)
    images = np.zeros((ROWS, 1, 1, 2), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids // 256, ids % 256
    soft = np.eye(3, dtype=np.float32)[ids % 3]
    folder = tmp_path / "set"
    folder.mkdir()
    for i, part in enumerate(np.array_split(ids, 3)):
        table = tables.image_table(images[part], ids[part]).append_column(
            "soft_label", tables.soft_label_table(ids[part], soft[part]).column("soft_label"))
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=10)
    artifacts.seal(str(folder), ROWS)
    return TableInfo(str(folder), ROWS, (1, 1, 2), ("a", "b", "c"), [0.0], [1.0])


def seen(stream: Streamed, epoch: int, seed: int = 7) -> list[list[int]]:
    """The ids of each batch of one epoch."""
    return [(x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist() for x, _ in stream.epoch(epoch, seed)]


def stream(info: TableInfo, rank: int = 0, world: int = 1) -> Streamed:
    return Streamed(info, "soft_label", 16, rank, world, torch.device("cpu"), 0.5, reserved=False)


def test_one_epoch_is_every_row_once_in_the_same_order_again(ray_local, student_table):
    first, again = seen(stream(student_table), 3), seen(stream(student_table), 3)
    assert first == again  # a resumed run at epoch 3 sees these batches
    assert sorted(sum(first, [])) == list(range(ROWS)) and len(first) == stream(student_table).steps == 7
    assert sum(first, []) != list(range(ROWS))  # shuffled
    assert seen(stream(student_table), 4) != first  # and differently each epoch


def test_ranks_take_equal_steps_of_disjoint_rows(ray_local, student_table):
    ranks = [seen(stream(student_table, r, 2), 0) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == stream(student_table, 0, 2).steps == 4
    rows = [sum(r, []) for r in ranks]
    assert len(rows[0]) == len(rows[1]) == ROWS // 2 and not set(rows[0]) & set(rows[1])


def test_targets_travel_with_their_images(ray_local, student_table):
    for x, y in stream(student_table).epoch(0, 1):
        ids = x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()
        assert torch.equal(y.argmax(1), ids % 3)


def test_a_bounded_read_ahead_reaches_ray_data_and_streams_the_same_rows(ray_local, student_table):
    import ray
    from ray.data.context import DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO

    bounded = Streamed(student_table, "soft_label", 16, 0, 1, torch.device("cpu"), 0.5, reserved=False,
                       read_ahead=2**20)
    assert seen(bounded, 3) == seen(stream(student_table), 3)

    def limits(s: Streamed) -> tuple[float, float | None]:  # the context stays with a reused trial's process
        next(iter(s.epoch(0, 1)))
        context = ray.data.DataContext.get_current()
        return context.execution_options.resource_limits.object_store_memory, \
            context.downstream_capacity_backpressure_ratio

    # Bounded, without the policy that stalled its reads; unbounded, Ray Data's defaults again.
    assert limits(bounded) == (2**20, None)
    assert limits(stream(student_table)) == (float("inf"), DEFAULT_DOWNSTREAM_CAPACITY_BACKPRESSURE_RATIO)


def test_a_read_task_unpickles_its_function_and_context_without_importing_pytorch(ray_local, student_table, tmp_path):
    """Ray Data ships the stream's function and its context (callback classes included) to each read task;
    importing PyTorch there cost a stream's first batch 1.6-2 s."""
    import ray
    import ray.cloudpickle

    from deepmimic.core.row_groups import read_parts

    next(iter(stream(student_table).epoch(0, 1)))
    shipped = tmp_path / "shipped.pkl"
    shipped.write_bytes(ray.cloudpickle.dumps((read_parts, ray.data.DataContext.get_current())))
    code = f"import pickle; pickle.loads(open({str(shipped)!r}, 'rb').read())"
    assert imported_by_fresh_python(code, "torch") == []


def test_blocks_are_cut_into_consecutive_batches_across_their_edges():
    blocks = [(np.arange(a, b), -np.arange(a, b)) for a, b in [(0, 10), (10, 13), (13, 38)]]
    batches = list(_batches(iter(blocks), 8))
    assert [len(x) for x, _ in batches] == [8, 8, 8, 8, 6]
    assert np.array_equal(np.concatenate([x for x, _ in batches]), np.arange(38))
    assert all(np.array_equal(y, -x) for x, y in batches)


def test_the_scheduling_loop_sleeps_only_when_it_comes_back_at_once():
    """Ray Data's loop blocks on running reads (up to 0.1 s); with none running it would spin. A clock of the
    test's own: the behaviour, not this shared machine's timing."""
    now, slept = [0.0], []
    paced = Paced(clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    now[0] = 0.001
    paced.on_execution_step(None)  # straight after the previous step (here: creation)
    assert slept == [PAUSE_S]
    now[0] += 0.05
    paced.on_execution_step(None)  # after a step that waited on reads
    assert slept == [PAUSE_S]
    now[0] += AT_ONCE_S / 2
    paced.on_execution_step(None)
    assert slept == [PAUSE_S, PAUSE_S]


def test_two_streaming_trials_at_once_on_a_two_cpu_node(ray_local, tmp_path):
    """Each trial holds 0.5 CPU for training and 0.5 for its Ray Data reads: both run together on 2 CPUs,
    neither waiting for the other's CPUs."""
    assert ray_local.cluster_resources()["CPU"] == 2
    root = image_folder(tmp_path / "data", per_class=8, classes=3, test=3)
    rng = np.random.default_rng(0)
    parquet_images(tmp_path / "pool.parquet", (rng.integers(0, 200, (90, 8, 8))).astype(np.uint8))
    space = {
        "name": "streams", "dataset": {"name": "image_folder", "root": str(root),
                                       "unlabeled": str(tmp_path / "pool.parquet")},
        "training": {"epochs": 3, "batch_size": 8}, "data": {"stream": "always", "data_cpus": 0.5},
        "resources": {"cpus_per_worker": 0.5},
        "tracking": {"models": "none"},  # no claim here reads figures or models
        "mentor": {"name": "M", "architecture": "c-fc", "width": 4},
        "students": [{"name": "A", "architecture": "c-fc", "width": 4},
                     {"name": "B", "architecture": "c-fc", "width": 2}],
    }
    proc = sweep(ray_local, tmp_path, space, str(tmp_path / "out"), str(tmp_path / "cache"))
    assert "student trials: 2 (2 run" in proc.stdout
    records = [json.loads(p.read_text()) for p in Path(tmp_path / "out").glob("trials/*/trial.json")]
    assert len(records) == 2 and all(r["student"]["streamed"] for r in records)
    reported = json.loads((tmp_path / "out" / "tune" / "students.json").read_text())  # each trial's, as Tune has it
    spans = [(last["timestamp"] - last["time_total_s"], last["timestamp"]) for last in reported]
    assert len(spans) == 2
    (a0, a1), (b0, b1) = spans
    assert max(a0, b0) < min(a1, b1), f"the two trials did not overlap: {spans}"
