"""Ray Train: one mentor or student run, on a worker group or in this process.

The worker materialises its shard once as device tensors and hands them to the
core loop; rank 0 evaluates on the test set after each epoch and, at the end,
saves the model, its test predictions and its history in the run's checkpoint.

A single-worker run inside a sweep's Tune trial, which already holds the
worker's CPUs and GPU share, runs in that process instead: a worker group
starts a controller and five more actors, each a new process, 8-10 s on a
2-core node for runs that may train for 10. (Ray Train's own local mode is
refused inside Tune trials.) Such a run stores its checkpoints in the run's
folder itself, where a retried trial, or a later worker group, finds them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ..core import checkpoints, tables
from ..core.architectures import ModelSpec, count_parameters
from ..core.evaluation import accuracy_and_loss, confusion_matrix, inference_time, predict_logits
from ..core.training import Hyper, sgd, train
from .data import TableInfo, read_shard


@dataclass(frozen=True)
class Resources:
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    threads_per_worker: int | None = None
    custom_per_worker: dict[str, float] = field(default_factory=dict)
    # Run the one worker in this process, whose caller holds its resources (a sweep's Tune trial).
    in_process: bool = False

    @property
    def threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))

    def per_worker(self) -> dict[str, float]:
        """The Ray resources one worker asks for."""
        return {"CPU": self.cpus_per_worker, **self.custom_per_worker,
                **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}

    def scaling(self) -> ScalingConfig:
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.gpus_per_worker > 0,
                             resources_per_worker=self.per_worker())


@dataclass(frozen=True)
class Trained:
    """A finished run: where its checkpoint lives and what rank 0 measured."""

    checkpoint: Checkpoint
    summary: dict[str, Any]        # params, test_accuracy, test_loss, inference_time_s, confusion, history
    test_predictions: np.ndarray   # argmax on the test set


def load_model(checkpoint: Checkpoint, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild a trained model from its checkpoint (checked against its manifest)."""
    with checkpoint.as_directory() as d:
        return checkpoints.load_model(d, device)


def _latest(run: str) -> Checkpoint | None:
    """The intact checkpoint of the furthest epoch in the run's folder, whoever wrote it
    (a worker group through Ray Train, or a run in a trial's own process)."""
    fs, root = tables.filesystem(run)
    best, best_epoch = None, -1
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        checkpoint = Checkpoint(info.path, fs)
        try:
            with checkpoint.as_directory() as d:
                checkpoints.verify(d)
                epoch = checkpoints.progress(d)["epoch"]
        except tables.TornArtifact:
            continue
        if epoch > best_epoch:
            best, best_epoch = checkpoint, epoch
    return best


class _WorkerGroup:
    """A worker of a Ray Train worker group: Ray Train stores and restores its checkpoints."""

    def __init__(self, run: str) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size, self.run = context.get_world_rank(), context.get_world_size(), run
        self.device = ray.train.torch.get_device()

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(net)  # DDP when there are several workers

    def latest(self) -> Checkpoint | None:
        return ray.train.get_checkpoint() or _latest(self.run)

    def report(self, metrics: dict[str, Any], folder: str | None, epoch: int) -> None:
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder) if folder else None)


class _OwnProcess:
    """The one worker, run in its caller's process (a sweep's Tune trial, which holds its
    resources): it stores its checkpoints under `run` itself, the newest two kept."""

    rank, world_size = 0, 1

    def __init__(self, run: str) -> None:
        self.run, self.last = run, None
        self.device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.to(self.device)

    def latest(self) -> Checkpoint | None:
        return _latest(self.run)

    def report(self, metrics: dict[str, Any], folder: str | None, epoch: int) -> None:
        fs, root = tables.filesystem(self.run)
        dest = f"{root}/checkpoint_epoch-{epoch:06d}"
        fs.delete_dir_contents(dest, missing_dir_ok=True)  # a restarted run reaching the same epoch again
        fs.create_dir(dest, recursive=True)
        pafs.copy_files(folder, dest, pafs.LocalFileSystem(), fs)
        kept = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.base_name.startswith("checkpoint_epoch-"))
        for old in kept[:-2]:
            fs.delete_dir(old)
        self.last = Checkpoint(dest, fs)


def _restore(net: torch.nn.Module, place: _WorkerGroup | _OwnProcess) -> tuple[int, list, dict | None]:
    """Load the run's latest checkpoint, if it has one (after a failure or a rerun of an
    interrupted run): the epoch reached, the history and the optimizer."""
    checkpoint = place.latest()
    if checkpoint is None:
        return 0, [], None
    with checkpoint.as_directory() as d:
        return checkpoints.load_progress(d, net)


def _worker(cfg: dict[str, Any]) -> None:
    """Runs on every worker of a Ray Train worker group."""
    _train(cfg, _WorkerGroup(cfg["run"]))


def _train(cfg: dict[str, Any], place: _WorkerGroup | _OwnProcess) -> None:
    """One worker's run: its shard on its device, the core loop, rank 0's scores and checkpoints."""
    train_info, test_info = TableInfo.from_json(cfg["train"]), TableInfo.from_json(cfg["test"])
    rank, device = place.rank, place.device
    torch.set_num_threads(cfg["threads"])
    images, targets = read_shard(train_info, cfg["target"], rank, place.world_size)
    x, y = torch.from_numpy(images).to(device), torch.from_numpy(targets).to(device)

    hyper, spec = Hyper(**cfg["hyper"]), ModelSpec(**cfg["spec"])
    torch.manual_seed(hyper.seed)
    net = spec.build(train_info.shape, cfg["num_classes"], train_info.mean, train_info.std)
    start_epoch, history, opt_state = _restore(net, place)
    model = place.prepare(net)
    test = tables.to_image_set(tables.read(test_info.uri), test_info.shape, test_info.class_names) if rank == 0 else None
    test_x = torch.from_numpy(test.images).to(device) if test else None
    test_y = torch.from_numpy(test.labels).to(device) if test else None
    meta = {"spec": cfg["spec"], "shape": list(train_info.shape), "num_classes": cfg["num_classes"],
            "mean": train_info.mean, "std": train_info.std}
    optimizer = sgd(model, hyper)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)

    scored: dict[str, torch.Tensor] = {}  # the last epoch's test logits: the final model's, once training ends

    def on_epoch(epoch: int, train_loss: float) -> None:
        metrics = {"epoch": epoch, "train_loss": train_loss}
        if rank == 0:
            scored["logits"] = predict_logits(net, test_x)
            acc, loss = accuracy_and_loss(scored["logits"], test_y)
            metrics |= {"test_accuracy": acc, "test_loss": loss}
            history.append(metrics)
        if cfg["checkpoint_every"] and epoch % cfg["checkpoint_every"] == 0 and epoch < hyper.epochs:
            # A barrier across ranks; rank 0 alone writes the state every rank restores.
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    checkpoints.save(d, net, optimizer, epoch, history, meta)
                place.report(metrics, d if rank == 0 else None, epoch)

    train(model, x, y, hyper, on_epoch, start_epoch, optimizer)

    if rank != 0:
        place.report({"epoch": hyper.epochs}, None, hyper.epochs)
        return
    logits = scored["logits"] if "logits" in scored else predict_logits(net, test_x)  # restored at its last epoch
    acc, loss = accuracy_and_loss(logits, test_y)
    preds = logits.argmax(1).cpu().numpy()
    summary = {
        "params": count_parameters(net),
        "test_accuracy": acc,
        "test_loss": loss,
        "inference_time_s": inference_time(net, test_x, cfg["inference_repeats"], warm_up=False),  # warm: just scored
        "device": str(device),
        "node_id": ray.get_runtime_context().get_node_id(),
        "confusion": confusion_matrix(test.labels, preds, cfg["num_classes"]).tolist(),
        "history": history,
        "resumed_from_epoch": start_epoch,
    }
    with tempfile.TemporaryDirectory() as d:
        checkpoints.save(d, net, optimizer, hyper.epochs, history, meta,
                         {"summary.json": json.dumps(summary).encode(), "test_predictions.npy": checkpoints.npy_bytes(preds)})
        place.report(history[-1] if history else {"epoch": hyper.epochs}, d, hyper.epochs)


def fit(
    name: str,
    spec: ModelSpec,
    hyper: Hyper,
    train_info: TableInfo,
    target: str,
    test_info: TableInfo,
    num_classes: int,
    resources: Resources,
    storage_path: str,
    inference_repeats: int = 5,
    checkpoint_every: int = 0,
    worker_restarts: int = 0,
) -> Trained:
    """Train one model on a Ray Train worker group on `train_info`'s table against
    `target` (`label` for a mentor, `soft_label` for a student).

    Every epoch's test metrics land in the summary's history. A checkpoint every
    `checkpoint_every` epochs (0: only the final one) lets Ray Train restart a
    failed worker group up to `worker_restarts` times from where it was, and a
    rerun of the same `name` under `storage_path` (an interrupted sweep) too.

    With `resources.in_process` the single worker runs in this process, whose
    caller holds its resources (a sweep's Tune trial); restarts are then the trial's.
    """
    if resources.in_process and resources.num_workers != 1:
        raise ValueError("only a single-worker run can train in its caller's process")
    cfg = {
        "spec": asdict(spec), "hyper": asdict(hyper), "train": asdict(train_info), "test": asdict(test_info),
        "target": target, "num_classes": num_classes, "inference_repeats": inference_repeats,
        "threads": resources.threads, "checkpoint_every": checkpoint_every,
        "run": f"{storage_path}/{name}",
    }
    if resources.in_process:
        own = _OwnProcess(cfg["run"])
        _train(cfg, own)
        checkpoint = own.last
    else:
        # Ray Train's controller polls its workers every 2 s by default, so each run waited about a second
        # for nothing at its end; every 0.5 s saved 1.5 s a run here (a user's own setting wins).
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        trainer = TorchTrainer(
            _worker,
            train_loop_config=cfg,
            scaling_config=resources.scaling(),
            run_config=RunConfig(name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=worker_restarts),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        checkpoint = trainer.fit().checkpoint
    with checkpoint.as_directory() as d:
        checkpoints.verify(d)
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        preds = np.load(os.path.join(d, "test_predictions.npy"), allow_pickle=False)
    return Trained(checkpoint, summary, preds)
