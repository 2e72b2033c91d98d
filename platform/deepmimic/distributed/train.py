"""Ray Train: one mentor or student run, on a worker group or in this process.

The worker materialises its shard once as device tensors and hands them to the
core loop; rank 0 evaluates on the test set after each epoch and, at the end,
saves the model, its test predictions and its history in the run's checkpoint.

A single-worker run never starts a worker group, which costs a controller and
five more actors, each a new process, 8-10 s on a 2-core node for runs that may
train for 10 (Ray Train's own local mode is refused inside Tune trials): inside
a sweep's Tune trial, which already holds the worker's CPUs and GPU share, it
runs in that process; elsewhere (`deepmimic run`) in a Ray task holding them.
Such a run stores its checkpoints in the run's folder itself, where a retried
trial or task, or a later worker group, finds them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import pyarrow.fs as pafs
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..config import ResourcesConfig
from ..core import artifacts, checkpoints, tables
from ..core.architectures import ModelSpec, count_parameters
from ..core.batches import Batches, InMemory
from ..core.evaluation import accuracy_and_loss, confusion_matrix, inference_time, predict_logits
from ..core.results import Epoch, RunSummary
from ..core.training import Hyper, sgd, train_on
from .data import TableInfo, read_shard
from .progress import Progress
from .streaming import Streamed


@dataclass(frozen=True)
class RunSpec:
    """One training run: everything it needs, made from the validated config in one place
    (`stages.run_spec`) and handed to the loop as it is, in this process or to every worker."""

    name: str                     # the run's folder under `storage`; a rerun of the same name resumes
    storage: str
    model: ModelSpec
    hyper: Hyper
    seed: int
    temperature: float            # of the loss (Hinton's), 1 for every other method
    train: TableInfo
    target: str                   # `label` for a mentor, `soft_label` for a student
    test: TableInfo
    num_classes: int
    resources: ResourcesConfig
    inference_repeats: int = 5
    checkpoint_every: int = 0     # epochs between checkpoints (0: only the final one)
    worker_restarts: int = 0
    in_process: bool = False      # the one worker runs in this process, whose caller holds its resources
    stream: bool = False          # stream `train` through Ray Data (`streaming.py`) instead of holding it
    data_cpus: float = 0.5        # CPUs reserved for Ray Data's reads where it streams
    read_ahead: int | None = None  # object-store bytes read ahead of training where it streams (None: Ray Data's)
    progress: Progress | None = None  # the sweep's live MLflow run of this training (rank 0 tells it)
    validation: TableInfo | None = None  # scored after every epoch (`label`: true classes or the mentor's)
    tune_metrics: dict[str, float] | None = None  # given: rank 0 reports every epoch to Tune, these added

    @property
    def run(self) -> str:
        return f"{self.storage}/{self.name}"


@dataclass(frozen=True)
class Trained:
    """A finished run: where its checkpoint lives and what rank 0 measured."""

    checkpoint: Checkpoint
    summary: RunSummary
    test_predictions: np.ndarray   # argmax on the test set


def load_model(checkpoint: Checkpoint, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild a trained model from its checkpoint (checked against its manifest)."""
    with checkpoint.as_directory() as d:
        return checkpoints.load_model(d, device)


def _latest(run: str) -> Checkpoint | None:
    """The intact checkpoint of the furthest epoch in the run's folder, whoever wrote it
    (a worker group through Ray Train, or a run in a trial's own process)."""
    fs, root = artifacts.filesystem(run)
    best, best_epoch = None, -1
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        checkpoint = Checkpoint(info.path, fs)
        try:
            with checkpoint.as_directory() as d:
                artifacts.verify(d)
                epoch = checkpoints.progress(d)["epoch"]
        except artifacts.TornArtifact:
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
        fs, root = artifacts.filesystem(self.run)
        dest = f"{root}/checkpoint_epoch-{epoch:06d}"
        fs.delete_dir_contents(dest, missing_dir_ok=True)  # a restarted run reaching the same epoch again
        fs.create_dir(dest, recursive=True)
        pafs.copy_files(folder, dest, pafs.LocalFileSystem(), fs)
        kept = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                      if i.base_name.startswith("checkpoint_epoch-"))
        for old in kept[:-2]:
            fs.delete_dir(old)
        self.last = Checkpoint(dest, fs)


def _restore(net: torch.nn.Module, place: _WorkerGroup | _OwnProcess) -> tuple[int, list[Epoch], dict | None]:
    """Load the run's latest checkpoint, if it has one (after a failure or a rerun of an
    interrupted run): the epoch reached, the history and the optimizer."""
    checkpoint = place.latest()
    if checkpoint is None:
        return 0, [], None
    with checkpoint.as_directory() as d:
        epoch, history, optimizer = checkpoints.load_progress(d, net)
    return epoch, [Epoch(**e) for e in history], optimizer


def _worker(config: dict[str, RunSpec]) -> None:
    """Runs on every worker of a Ray Train worker group."""
    _train(config["spec"], _WorkerGroup(config["spec"].run))


def _train(spec: RunSpec, place: _WorkerGroup | _OwnProcess) -> None:
    """One worker's run: its shard on its device, the core loop, rank 0's scores and checkpoints."""
    rank, device, hyper = place.rank, place.device, spec.hyper
    torch.set_num_threads(spec.resources.threads)
    if spec.stream:
        data: Batches = Streamed(spec.train, spec.target, hyper.batch_size, rank, place.world_size, device,
                                 spec.data_cpus, reserved=spec.in_process, read_ahead=spec.read_ahead)
    else:
        images, targets = read_shard(spec.train, spec.target, rank, place.world_size)
        data = InMemory(torch.from_numpy(images).to(device), torch.from_numpy(targets).to(device), hyper.batch_size)

    torch.manual_seed(spec.seed)
    net = spec.model.build(spec.train.shape, spec.num_classes, spec.train.mean, spec.train.std)
    start_epoch, history, opt_state = _restore(net, place)
    live = spec.progress if rank == 0 else None
    if live:
        live.started(history)
    if hyper.channels_last:  # before DDP takes the parameters' strides for its gradient buckets
        net.to(memory_format=torch.channels_last)
    model = place.prepare(net)
    test = (tables.to_image_set(tables.read(spec.test.uri), spec.test.shape, spec.test.class_names)
            if rank == 0 else None)
    test_x = torch.from_numpy(test.images).to(device) if test else None
    test_y = torch.from_numpy(test.labels).to(device) if test else None
    held = (tables.to_image_set(tables.read(spec.validation.uri), spec.validation.shape, ())
            if rank == 0 and spec.validation else None)
    val_x = torch.from_numpy(held.images).to(device) if held else None
    val_y = torch.from_numpy(held.labels).to(device) if held else None
    meta = {"spec": asdict(spec.model), "shape": list(spec.train.shape), "num_classes": spec.num_classes,
            "mean": spec.train.mean, "std": spec.train.std}
    optimizer = sgd(model, hyper)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)

    scored: dict[str, torch.Tensor] = {}  # the last epoch's test logits: the final model's, once training ends

    def save(folder: str, epoch: int, extra: dict[str, bytes] | None = None) -> None:
        checkpoints.save(folder, net, optimizer, epoch, [asdict(e) for e in history], meta, extra)

    def on_epoch(epoch: int, train_loss: float) -> None:
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        if val_x is not None:
            metrics["validation_accuracy"] = accuracy_and_loss(predict_logits(net, val_x), val_y)[0]
        if rank == 0 and (epoch % hyper.evaluation_every == 0 or epoch == hyper.epochs):  # the last: exact
            scored["logits"] = predict_logits(net, test_x)
            metrics["test_accuracy"], metrics["test_loss"] = accuracy_and_loss(scored["logits"], test_y)
        if rank == 0:
            history.append(Epoch(epoch, train_loss, metrics.get("test_accuracy"), metrics.get("test_loss"),
                                 metrics.get("validation_accuracy")))
        if live:
            live.epoch(history[-1])
        if spec.tune_metrics is not None and rank == 0:  # a search's trial: its scheduler may stop it here
            tune.report(metrics | spec.tune_metrics)
        if spec.checkpoint_every and epoch % spec.checkpoint_every == 0 and epoch < hyper.epochs:
            # A barrier across ranks; rank 0 alone writes the state every rank restores.
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    save(d, epoch)
                place.report(metrics, d if rank == 0 else None, epoch)

    started = time.perf_counter()
    train_on(model, data, hyper, on_epoch, start_epoch, optimizer, seed=spec.seed, temperature=spec.temperature)
    train_time = time.perf_counter() - started

    if rank != 0:
        place.report({"epoch": hyper.epochs}, None, hyper.epochs)
        return
    logits = scored["logits"] if "logits" in scored else predict_logits(net, test_x)  # restored at its last epoch
    acc, loss = accuracy_and_loss(logits, test_y)
    preds = logits.argmax(1).cpu().numpy()
    summary = RunSummary(
        params=count_parameters(net), test_accuracy=acc, test_loss=loss,
        inference_time_s=inference_time(net, test_x, spec.inference_repeats, warm_up=False),  # warm: just scored
        device=str(device), node_id=ray.get_runtime_context().get_node_id(),
        confusion_matrix=confusion_matrix(test.labels, preds, spec.num_classes).tolist(),
        history=tuple(history), resumed_from_epoch=start_epoch, train_time_s=round(train_time, 3), streamed=spec.stream,
    )
    with tempfile.TemporaryDirectory() as d:
        save(d, hyper.epochs, {"summary.json": json.dumps(summary.to_json()).encode(),
                               "test_predictions.npy": checkpoints.npy_bytes(preds)})
        last = asdict(history[-1]) if history else {"epoch": hyper.epochs}
        place.report(last, d, hyper.epochs)
    if live:
        live.ended()


def as_task(fn: Callable, resources: ResourcesConfig, **options: Any) -> Any:
    """`fn` as a Ray task holding one worker's resources. DEFAULT scheduling: called inside a Tune trial,
    a task would otherwise be held to the trial's own small bundle."""
    options.setdefault("scheduling_strategy", "DEFAULT")
    return ray.remote(fn).options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker,
                                  resources=resources.custom_per_worker or None, **options)


def fit(spec: RunSpec) -> Trained:
    """Train one model on `spec.train`'s table against `spec.target`: in this process where
    `spec.in_process` (its caller, a sweep's Tune trial, holds the worker's resources; restarts
    are then the trial's), else a single worker in a Ray task (retried from its last checkpoint
    up to `worker_restarts` times if its process dies) and several on a Ray Train worker group.

    Every epoch's test metrics land in the summary's history. A checkpoint every
    `checkpoint_every` epochs (0: only the final one) lets Ray Train restart a
    failed worker group up to `worker_restarts` times from where it was, and a
    rerun of the same run (an interrupted sweep) too.
    """
    if spec.in_process and spec.resources.num_workers != 1:
        raise ValueError("only a single-worker run can train in its caller's process")
    if not spec.in_process and spec.resources.num_workers == 1:
        # One Ray task holding the worker's resources, on a worker process Ray keeps for the next task
        # of the same shape: a worker group's controller and helper actors cost 8-10 s a run here.
        if not spec.stream:
            task = as_task(fit, spec.resources, max_retries=spec.worker_restarts, retry_exceptions=False)
            return ray.get(task.remote(replace(spec, in_process=True)))
        # A streaming run's Ray Data reads get CPUs of their own: a placement group with the task's bundle
        # and theirs, which the task's child tasks are held to.
        group = placement_group([spec.resources.per_worker(), {"CPU": spec.data_cpus}])
        try:
            ray.get(group.ready())
            task = as_task(fit, spec.resources, max_retries=spec.worker_restarts, retry_exceptions=False,
                           scheduling_strategy=PlacementGroupSchedulingStrategy(
                               group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True))
            return ray.get(task.remote(replace(spec, in_process=True)))
        finally:
            remove_placement_group(group)
    if spec.in_process:
        own = _OwnProcess(spec.run)
        _train(spec, own)
        checkpoint = own.last
    else:
        # Ray Train's controller polls its workers every 2 s by default, so each run waited about a second
        # for nothing at its end; every 0.5 s saved 1.5 s a run here (a user's own setting wins).
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        r = spec.resources
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"spec": spec},
            scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0,
                                         resources_per_worker=r.per_worker()),
            run_config=RunConfig(name=spec.name, storage_path=spec.storage,
                                 failure_config=FailureConfig(max_failures=spec.worker_restarts),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        checkpoint = trainer.fit().checkpoint
    with checkpoint.as_directory() as d:
        artifacts.verify(d)
        summary = RunSummary.from_json(artifacts.load_json(os.path.join(d, "summary.json")))
        preds = np.load(os.path.join(d, "test_predictions.npy"), allow_pickle=False)
    return Trained(checkpoint, summary, preds)
