"""Ray Train: one mentor or student run, on a worker group or in this process.

The worker materialises its shard once as device tensors and hands them to the
core loop; rank 0 evaluates on the test set after each epoch and, at the end,
saves the model, its test predictions and its history in the run's checkpoint.

A single-worker run never starts a worker group, which costs a controller and
five more actors, each a new process, for runs that may train for seconds
(Ray Train's own local mode is refused inside Tune trials): inside
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
from ..core.fixmatch import FixMatch, FixMatchBatches
from ..core.results import Epoch, RunSummary, pack_correct
from ..core.training import Objective, Training, nonfinite, sgd, train_on
from ..errors import UserError
from .data import TableInfo, read_shard
from .progress import Progress
from .streaming import Streamed


@dataclass(frozen=True)
class ModelPlan:
    """What is trained: the network, its recipe, its seed and the loss it learns under."""

    spec: ModelSpec
    training: Training
    seed: int
    objective: Objective           # a student's method, or a mentor's smoothed cross-entropy
    weights: str | None = None     # a library network's start (`core/library_models.py`), for a fresh run
    teacher: str | None = None     # the mentor's checkpoint, asked each step (a `teacher_online` method's)


@dataclass(frozen=True)
class Stream:
    data_cpus: float = 0.5         # CPUs reserved for Ray Data's reads
    read_ahead: int | None = None  # object-store bytes read ahead of training (None: Ray Data's budget)


@dataclass(frozen=True)
class Semi:
    """A pool learnt from beside the labelled table, by FixMatch, with the recipe's weak augmentation (the run's
    own recipe then augments nothing: the batches do)."""

    pool: TableInfo
    fixmatch: FixMatch
    shift: int = 0
    flip: bool = False


@dataclass(frozen=True)
class DataPlan:
    """What it learns from and is scored on."""

    train: TableInfo
    target: str                    # `label` for a mentor, `soft_label` for a student
    test: TableInfo
    num_classes: int
    validation: TableInfo | None = None  # scored after every epoch (`label`: true classes or the mentor's)
    stream: Stream | None = None   # `train` streamed through Ray Data (`streaming.py`) instead of held
    inference_repeats: int = 5     # timed passes over the test set at the end
    semi: Semi | None = None       # unlabelled images learnt from beside `train` (a FixMatch mentor's)


@dataclass(frozen=True)
class Placement:
    """Where it trains and how it survives failures."""

    resources: ResourcesConfig
    in_process: bool = False       # the one worker runs in this process, whose caller holds its resources
    checkpoint_every: int = 0      # epochs between checkpoints (0: only the final one)
    worker_restarts: int = 0


@dataclass(frozen=True)
class Hooks:
    """Who hears of the run as it trains (rank 0 tells them): the sweep's tracker (its live MLflow run), and
    Tune where a scheduler watches every epoch (a searched student, with `tune_metrics` added)."""

    progress: Progress | None = None
    tune_metrics: dict[str, float] | None = None

    def started(self, history: list[Epoch]) -> None:
        if self.progress is not None:
            self.progress.started(history)

    def epoch(self, record: Epoch) -> None:
        if self.progress is not None:
            self.progress.epoch(record)
        if self.tune_metrics is not None:  # its scheduler may stop it here
            scores = {k: v for k, v in asdict(record).items() if isinstance(v, (int, float)) and k != "ended_ms"}
            tune.report(scores | self.tune_metrics)

    def ended(self) -> None:
        if self.progress is not None:
            self.progress.ended()


@dataclass(frozen=True)
class RunSpec:
    """One training run, made from the validated config in one place (`runs.run_spec`) and handed to the loop
    as it is, in this process or to every worker."""

    name: str                      # the run's folder under `storage`; a rerun of the same name resumes
    storage: str
    model: ModelPlan
    data: DataPlan
    placement: Placement
    hooks: Hooks = Hooks()

    @property
    def run(self) -> str:
        return f"{self.storage}/{self.name}"


@dataclass(frozen=True)
class Trained:
    """A finished run: where its checkpoint lives and what rank 0 measured."""

    checkpoint: Checkpoint
    summary: RunSummary
    test_predictions: np.ndarray   # argmax on the test set

    @property
    def uri(self) -> str:
        """The checkpoint folder: a local path, or a storage URI (`s3://…`, `gs://…`) that pyarrow reads."""
        kind = self.checkpoint.filesystem.type_name
        return self.checkpoint.path if kind == "local" else f"{ {'gcs': 'gs'}.get(kind, kind)}://{self.checkpoint.path}"


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
        with artifacts.writing(dest):
            try:
                fs.create_dir(dest, recursive=True)
                pafs.copy_files(folder, dest, pafs.LocalFileSystem(), fs)
            except OSError:  # half a checkpoint is never taken for one (its manifest would not match): freed
                fs.delete_dir(dest)
                raise
        kept = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                      if i.base_name.startswith("checkpoint_epoch-"))
        for old in kept[:-2]:
            fs.delete_dir(old)
        self.last = Checkpoint(dest, fs)


def _restore(net: torch.nn.Module, worker: _WorkerGroup | _OwnProcess) -> tuple[int, list[Epoch], dict | None]:
    """Load the run's latest checkpoint, if it has one (after a failure or a rerun of an
    interrupted run): the epoch reached, the history and the optimizer."""
    checkpoint = worker.latest()
    if checkpoint is None:
        return 0, [], None
    with checkpoint.as_directory() as d:
        epoch, history, optimizer = checkpoints.load_progress(d, net)
    return epoch, [Epoch(**e) for e in history], optimizer


def _worker(config: dict[str, RunSpec]) -> None:
    """Runs on every worker of a Ray Train worker group."""
    _train(config["spec"], _WorkerGroup(config["spec"].run))


def _batches(spec: RunSpec, worker: _WorkerGroup | _OwnProcess) -> Batches:
    """This worker's share of the training table: held on its device, or streamed."""
    data, batch_size = spec.data, spec.model.training.batch_size
    if data.semi is not None:
        images, labels = read_shard(data.train, data.target, worker.rank, worker.world_size)
        pool, _ = read_shard(data.semi.pool, None, worker.rank, worker.world_size)
        on = worker.device
        return FixMatchBatches(torch.from_numpy(images).to(on), torch.from_numpy(labels).to(on),
                               torch.from_numpy(pool).to(on), batch_size, data.semi.fixmatch, data.semi.shift,
                               data.semi.flip)
    if data.stream is not None:
        return Streamed(data.train, data.target, batch_size, worker.rank, worker.world_size, worker.device,
                        data.stream.data_cpus, reserved=spec.placement.in_process, read_ahead=data.stream.read_ahead)
    images, targets = read_shard(data.train, data.target, worker.rank, worker.world_size)
    return InMemory(torch.from_numpy(images).to(worker.device), torch.from_numpy(targets).to(worker.device),
                    batch_size)


class _Scores:
    """Rank 0's test set (and validation slice) on its device, scored after the epochs that are due."""

    def __init__(self, data: DataPlan, device: torch.device) -> None:
        def on_device(info: TableInfo | None, names: tuple[str, ...]) -> tuple[Any, Any]:
            if info is None:
                return None, None
            held = tables.to_image_set(tables.read(info.uri), info.shape, names)
            return torch.from_numpy(held.images).to(device), torch.from_numpy(held.labels).to(device)

        self.test_x, self.test_y = on_device(data.test, data.test.class_names)
        self.val_x, self.val_y = on_device(data.validation, ())
        self.logits: torch.Tensor | None = None  # the last scored epoch's test logits

    def epoch(self, net: torch.nn.Module, test_due: bool) -> dict[str, float]:
        scores = {}
        if self.val_x is not None:
            scores["validation_accuracy"] = accuracy_and_loss(predict_logits(net, self.val_x), self.val_y)[0]
        if test_due:
            self.logits = predict_logits(net, self.test_x)
            scores["test_accuracy"], scores["test_loss"] = accuracy_and_loss(self.logits, self.test_y)
        return scores


def _train(spec: RunSpec, worker: _WorkerGroup | _OwnProcess) -> None:
    """One worker's run: its shard on its device, the core loop, rank 0's scores and checkpoints."""
    rank, device, training = worker.rank, worker.device, spec.model.training
    torch.set_num_threads(spec.placement.resources.threads)
    data = _batches(spec, worker)
    torch.manual_seed(spec.model.seed)
    net = spec.model.spec.build(spec.data.train.shape, spec.data.num_classes, spec.data.train.mean,
                                spec.data.train.std, spec.model.weights)  # a restored run's own weights come next
    start_epoch, history, opt_state = _restore(net, worker)
    if training.channels_last:  # before DDP takes the parameters' strides for its gradient buckets
        net.to(memory_format=torch.channels_last)
    model = worker.prepare(net)
    optimizer = sgd(model, training)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    scores = _Scores(spec.data, device) if rank == 0 else None
    hooks = spec.hooks if rank == 0 else Hooks()
    hooks.started(history)

    def save(folder: str, epoch: int, extra: dict[str, bytes] | None = None) -> None:
        meta = {"spec": asdict(spec.model.spec), "shape": list(spec.data.train.shape),
                "num_classes": spec.data.num_classes, "mean": spec.data.train.mean, "std": spec.data.train.std}
        checkpoints.save(folder, net, optimizer, epoch, [asdict(e) for e in history], meta, extra)

    def on_epoch(epoch: int, train: dict[str, float]) -> None:
        if scores is not None:  # evaluate, record, tell the tracker and Tune
            due = epoch % training.evaluation_every == 0 or epoch == training.epochs  # the last: exact
            stats = {k: v for k, v in train.items() if k != "loss"}
            history.append(Epoch(epoch, train["loss"], **scores.epoch(net, due), train_stats=stats, ended_ms=_ms()))
            hooks.epoch(history[-1])
        every = spec.placement.checkpoint_every
        if every and epoch % every == 0 and epoch < training.epochs:  # checkpoint: a barrier across ranks
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    save(d, epoch)  # rank 0 alone writes the state every rank restores
                worker.report({"epoch": epoch}, d if rank == 0 else None, epoch)

    started_ms, started = _ms(), time.perf_counter()
    teacher = checkpoints.load_model_at(spec.model.teacher, device) if spec.model.teacher else None
    train_on(model, data, training, on_epoch, start_epoch, optimizer, seed=spec.model.seed,
             objective=spec.model.objective, teacher=teacher)
    train_time = time.perf_counter() - started
    broken = nonfinite(net)
    if broken:  # never saved as finished, served or registered: the trial fails (and is retried where it may be)
        raise UserError(f"{spec.name}: training diverged, its weights non-finite in {', '.join(broken[:3])}: "
                        "lower training.lr (a run that diverges once by chance succeeds when run again)")

    if scores is None:
        worker.report({"epoch": training.epochs}, None, training.epochs)
        return
    logits = scores.logits if scores.logits is not None else predict_logits(net, scores.test_x)  # restored at the end
    acc, loss = accuracy_and_loss(logits, scores.test_y)
    preds, labels = logits.argmax(1).cpu().numpy(), scores.test_y.cpu().numpy()
    summary = RunSummary(
        params=count_parameters(net), test_accuracy=acc, test_loss=loss,
        inference_time_s=inference_time(net, scores.test_x, spec.data.inference_repeats, warm_up=False),  # warm
        device=str(device), node_id=ray.get_runtime_context().get_node_id(),
        confusion_matrix=confusion_matrix(labels, preds, spec.data.num_classes).tolist(),
        history=tuple(history), resumed_from_epoch=start_epoch, train_time_s=round(train_time, 3),
        streamed=spec.data.stream is not None, started_ms=started_ms, ended_ms=_ms(),
        test_correct=pack_correct(preds, labels),
    )
    with tempfile.TemporaryDirectory() as d:
        save(d, training.epochs, {"summary.json": json.dumps(summary.to_json()).encode(),
                                  "test_predictions.npy": checkpoints.npy_bytes(preds)})
        worker.report({"epoch": training.epochs}, d, training.epochs)
    hooks.ended()


def _ms() -> int:
    return int(time.time() * 1000)


def as_task(fn: Callable, resources: ResourcesConfig, **options: Any) -> Any:
    """`fn` as a Ray task holding one worker's resources. DEFAULT scheduling: called inside a Tune trial,
    a task would otherwise be held to the trial's own small bundle."""
    options.setdefault("scheduling_strategy", "DEFAULT")
    return ray.remote(fn).options(num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker,
                                  resources=resources.custom_per_worker or None, **options)


def fit(spec: RunSpec) -> Trained:
    """Train one model on its data plan's table against its target: in this process where the placement says
    `in_process` (its caller, a sweep's Tune trial, holds the worker's resources; restarts are then the
    trial's), else a single worker in a Ray task (retried from its last checkpoint up to `worker_restarts`
    times if its process dies) and several on a Ray Train worker group.

    Every epoch's test metrics land in the summary's history. A checkpoint every `checkpoint_every` epochs
    (0: only the final one) lets Ray Train restart a failed worker group up to `worker_restarts` times from
    where it was, and a rerun of the same run (an interrupted sweep) too.
    """
    where = spec.placement
    if where.in_process and where.resources.num_workers != 1:
        raise ValueError("only a single-worker run can train in its caller's process")
    if not where.in_process and where.resources.num_workers == 1:
        # One Ray task holding the worker's resources, on a worker process Ray keeps for the next task of the
        # same shape: a worker group starts a controller and helper actors, each a new process, for every run.
        here = replace(spec, placement=replace(where, in_process=True))
        task_options = {"max_retries": where.worker_restarts, "retry_exceptions": False}
        if spec.data.stream is None:
            return ray.get(as_task(fit, where.resources, **task_options).remote(here))
        # A streaming run's Ray Data reads get CPUs of their own: a placement group with the task's bundle
        # and theirs, which the task's child tasks are held to.
        group = placement_group([where.resources.per_worker(), {"CPU": spec.data.stream.data_cpus}])
        try:
            ray.get(group.ready())
            task = as_task(fit, where.resources, **task_options, scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True))
            return ray.get(task.remote(here))
        finally:
            remove_placement_group(group)
    if where.in_process:
        own = _OwnProcess(spec.run)
        _train(spec, own)
        checkpoint = own.last
    else:
        # Ray Train's controller polls its workers every 2 s by default, so each run waited about a second for
        # nothing at its end (a user's own setting wins).
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        r = where.resources
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"spec": spec},
            scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0,
                                         resources_per_worker=r.per_worker()),
            run_config=RunConfig(name=spec.name, storage_path=spec.storage,
                                 failure_config=FailureConfig(max_failures=where.worker_restarts),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        checkpoint = trainer.fit().checkpoint
    with checkpoint.as_directory() as d:
        artifacts.verify(d)
        summary = RunSummary.from_json(artifacts.load_json(os.path.join(d, "summary.json")))
        preds = np.load(os.path.join(d, "test_predictions.npy"), allow_pickle=False)
    return Trained(checkpoint, summary, preds)
