"""A training run as the config says: one `RunSpec`, made in one place for every mentor and student."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import ray

from ..config import ExperimentConfig
from ..core.fixmatch import FixMatch, FixMatchLoss
from ..core.training import CrossEntropy
from ..schema import ModelConfig
from .data import TableInfo
from .progress import Progress
from .train import DataPlan, Hooks, ModelPlan, Placement, RunSpec, Semi, Stream


def run_spec(cfg: ExperimentConfig, role: str, model: ModelConfig, data: TableInfo, test: TableInfo,
             num_classes: int, folder: str, in_trial: bool, progress: Progress | None = None,
             target: str | None = None, semi: tuple[TableInfo, FixMatch] | None = None,
             teacher: str | None = None) -> RunSpec:
    """One training run of `model` in its `role`: a mentor learns its table's true labels (its own smoothed
    cross-entropy; `target` another column, such as another mentor's `soft_label` rows), a student its set's
    soft labels under the experiment's method. `in_trial`: the caller is a Tune trial holding one worker's
    resources, where a single-worker run trains in the trial's own process. `semi`: a pool and FixMatch's knobs,
    for a mentor that learns from both (`core/fixmatch.py`). `teacher`: the mentor's checkpoint, for a student
    whose method asks it each step."""
    student = role == "student"
    resources = cfg.resources.of(role)
    objective = cfg.method if student else CrossEntropy(model.training.label_smoothing)
    training, plan = model.training, None
    if semi is not None:  # the batches augment each part their own way; the loop, nothing more
        pool, fixmatch = semi
        objective = FixMatchLoss(fixmatch.threshold, fixmatch.weight)
        plan = Semi(pool, fixmatch, training.shift, training.flip)
        training = dataclasses.replace(training, epochs=fixmatch.epochs(pool.rows, training.batch_size,
                                                                        training.epochs),
                                       shift=0, flip=False, augment=None, cuda_graph=False)
    stream = Stream(cfg.data.data_cpus, cfg.data.read_ahead) if student and streams(cfg, data) else None
    return RunSpec(
        name=f"{role}-{model.name}-{os.path.basename(folder)}", storage=f"{folder}/ray",
        model=ModelPlan(model.spec(), training, cfg.seed if model.seed is None else model.seed, objective,
                        model.weights, teacher if student and cfg.method.teacher_online else None),
        data=DataPlan(data, target or ("soft_label" if student else "label"), test, num_classes, stream=stream,
                      inference_repeats=cfg.inference_repeats, semi=plan),
        placement=Placement(resources, in_trial and resources.num_workers == 1,
                            cfg.fault_tolerance.checkpoint_every, cfg.fault_tolerance.worker_restarts),
        hooks=Hooks(progress),
    )


def in_memory_limit(cfg: ExperimentConfig) -> int:
    """`data.in_memory_limit`, or a quarter of one worker's share of the cluster's memory for workers."""
    if cfg.data.in_memory_limit is not None:
        return cfg.data.in_memory_limit
    cluster = ray.cluster_resources()
    share = cluster.get("memory", 0) / max(cluster.get("CPU", 1), 1) * cfg.resources.cpus_per_worker
    return int(share / 4)


def streams(cfg: ExperimentConfig, table: TableInfo) -> bool:
    """Whether a student trains on `table` streamed through Ray Data (else held on its device): per
    `data.stream`, or where its images and soft labels exceed `in_memory_limit`."""
    if cfg.data.stream != "auto":
        return cfg.data.stream == "always"
    row = int(np.prod(table.shape)) + 4 * len(table.class_names) + 8
    return table.rows * row > in_memory_limit(cfg)
