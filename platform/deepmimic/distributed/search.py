"""A search for the smallest student that keeps a share of its mentor's accuracy, on Ray Tune.

Students are drawn from the search space's grammar by Optuna's multi-objective TPE (validation score up,
size or latency down), at random, or all of them (a grid). Each trains in its trial's own process and
reports every epoch, so a scheduler stops weak students after a few epochs: `smaller_first`
(`pruning.py`) those a no-bigger student beats, or Ray Tune's ASHA those below most others.

A student is judged on a validation slice held out of the pool, which no searched student trains on,
never on the test set: its accuracy there over the mentor's where the pool has true labels (the paper's
split; the labels choose an architecture, they never become a student's targets), else its agreement
with the mentor (label-free). The cheapest student reaching the target is the answer; the sweep then
trains it like any student (full epochs, the whole pool), reports, logs and registers it.

A search's Tune experiment is named by what determines it, so a killed search resumes (Tune's restore,
the searcher's state included) without rerunning finished trials, and a finished one is read back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from ..config import SweepConfig
from ..core import artifacts, checkpoints, tables
from ..core.architectures import ModelSpec, count_parameters
from ..core.student_search import Candidate, MentorFigures, SearchSummary, architecture, latency_ms, winner
from ..errors import UserError
from ..report import SEARCH_FILE
from ..schema import ModelConfig, training_identity
from .cluster import concurrency, raise_failures, run_config, trial_resources
from .data import TableInfo, write_image_table
from .keys import digest, mentor_key
from .mentor_folder import MentorFolder
from .mentor_stage import MentorOutcome, train_mentor
from .pruning import SmallerFirst
from .runs import run_spec
from .student_sets import OOD_ID_OFFSET
from .student_stage import student_set
from .train import Hooks, as_task, fit


@dataclass(frozen=True)
class SearchData:
    """What every searched student trains on and is scored on."""

    train: TableInfo                  # the student set less the validation slice: id, image, soft_label
    validation: TableInfo             # id, image, label: true classes, or the mentor's (agreement)
    selection: str                    # labels or agreement
    mentor_accuracy: float            # the mentor's on the slice (1.0 for agreement)


def search_data(cfg: SweepConfig, mentor: MentorOutcome, folder: str) -> SearchData:
    """Hold a stratum-free random `validation_ratio` of the student set out of the searched students' training
    (out-of-domain images stay in training: they have no true class), written once under `folder`."""
    s, key = cfg.search, mentor_key(cfg)
    selection = s.selection if s.selection != "auto" else ("agreement" if mentor.pool_separate else "labels")
    whole = student_set(cfg, mentor).table
    producer = digest({"mentor": key, "set": whole.uri, "ratio": s.validation_ratio, "selection": selection})
    train_uri, val_uri = f"{folder}/train.parquet", f"{folder}/validation.parquet"
    if not (artifacts.intact(train_uri, producer) and artifacts.intact(val_uri, producer)):
        table = tables.read(whole.uri, ["id", "image", "soft_label"]).sort_by("id")
        ids = table.column("id").to_numpy()
        candidates = np.flatnonzero(ids < OOD_ID_OFFSET)
        held = np.sort(np.random.default_rng(cfg.seed).permutation(candidates)[:max(1, int(len(candidates)
                                                                                      * s.validation_ratio))])
        rest = np.setdiff1d(np.arange(len(ids)), held)
        tables.write_table(table.take(pa.array(rest)), train_uri, producer)
        slice_ = table.take(pa.array(held))
        mentor_says = tables.decode_soft_labels(slice_.column("soft_label")).argmax(1)
        labels = mentor_says
        if selection == "labels":  # the experimenter's labels of the pool, which no student reads
            truth = tables.read(mentor.files.pool_labels)
            order = pc.index_in(slice_.column("id"), truth.column("id")).to_numpy()
            labels = truth.column("label").to_numpy()[order]
        write_image_table(val_uri, tables.decode_images(slice_.column("image"), whole.shape), ids[held],
                          whole.class_names, labels, producer)
        artifacts.write_json({"mentor_accuracy": float(np.mean(mentor_says == labels))}, f"{folder}/mentor.json",
                             producer)
    val_rows = artifacts.read_manifest(val_uri)["rows"]
    return SearchData(dataclasses.replace(whole, uri=train_uri, rows=whole.rows - val_rows),
                      dataclasses.replace(whole, uri=val_uri, rows=val_rows), selection,
                      artifacts.read_json(f"{folder}/mentor.json")["mentor_accuracy"])


def _student(cfg: SweepConfig, config: dict[str, Any], name: str) -> ModelConfig:
    """The student a trial's drawn `config` describes."""
    arch = architecture(config["conv_blocks"], config["convs_per_block"], config["fc"], config["batch_norm"])
    return ModelConfig(name=name, architecture=arch, width=config["width"], training=cfg.search.training)


def _size_and_speed(spec: ModelSpec, shape: tuple[int, int, int], classes: int, device: str) -> dict[str, float]:
    model = spec.build(shape, classes)
    return {"params": count_parameters(model), "latency_ms_1": latency_ms(model, shape, 1, device),
            "latency_ms_256": latency_ms(model, shape, 256, device)}


def _device() -> str:
    return "cuda" if ray.get_gpu_ids() else "cpu"


def _search_trial(config: dict[str, Any], cfg: SweepConfig, mentor: MentorOutcome, data: SearchData,
                  folder: str) -> None:
    """Measure the drawn student, then train it under `folder` (the search's), reporting every epoch (the
    scheduler may stop it at any report)."""
    student, trial = _student(cfg, config, "candidate"), tune.get_context().get_trial_id()
    # Optuna draws a student again where it looks best: one trained in full is not trained twice.
    done = f"{folder}/students/{digest(student.identity())}.json"
    if artifacts.intact(done):
        first = artifacts.read_json(done)
        tune.report({**{k: v for k, v in first.items() if k != "trial_id"}, "duplicate_of": first["trial_id"]})
        return
    figures = _size_and_speed(student.spec(), data.train.shape, mentor.num_classes, _device())
    spec = run_spec(cfg, "student", student, data.train, mentor.test, mentor.num_classes, f"{folder}/trials/{trial}",
                    in_trial=True)
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, validation=data.validation),
                               hooks=Hooks(tune_metrics=figures))
    last = fit(spec).summary.history[-1]
    artifacts.write_json({**figures, "trial_id": trial, "epoch": last.epoch,
                          "validation_accuracy": last.validation_accuracy}, done)


def _mentor_figures(cfg: SweepConfig, mentor: MentorOutcome, data: SearchData) -> MentorFigures:
    """The mentor's size and latency, measured as the students' are: with one worker's resources."""
    result = mentor.result
    latency: dict[str, float] = {}
    if result.checkpoint:
        def measure() -> dict[str, float]:
            net = checkpoints.load_model_at(result.checkpoint)
            return {"latency_ms_1": latency_ms(net, data.train.shape, 1, _device()),
                    "latency_ms_256": latency_ms(net, data.train.shape, 256, _device())}
        latency = ray.get(as_task(measure, cfg.resources).remote())
    return MentorFigures(result.name, result.architecture, result.params, latency.get("latency_ms_1"),
                         latency.get("latency_ms_256"), data.mentor_accuracy)


def _tuner(cfg: SweepConfig, trainable: Any, storage: str, name: str, mentor_accuracy: float) -> tune.Tuner:
    """A new search, or the one of the same name found under `storage` (resumed, or read back if finished)."""
    path = f"{storage}/{name}"
    # Tune snapshots its state (and the searcher's) every 10 s or more, and at a Ctrl-C only through its own
    # SIGINT handler, which ours replaces (`stopping.py`): a killed search lost most of its finished students
    # (benchmarks/RESULTS.md). Its state is a few kilobytes: every 2 s.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    if tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_errored=True)
    s = cfg.search
    space = s.student_space
    values = {"conv_blocks": list(range(space.conv_blocks[0], space.conv_blocks[1] + 1)),
              "convs_per_block": list(range(space.convs_per_block[0], space.convs_per_block[1] + 1)),
              "width": sorted(set(space.width)), "fc": list(range(space.fc[0], space.fc[1] + 1)),
              "batch_norm": sorted(set(space.batch_norm))}
    # Integers as choices, not ranges: a handful of values each, and the grid takes the same lists.
    draws = {k: (tune.grid_search(v) if s.algorithm == "grid" else tune.choice(v)) for k, v in values.items()}
    cost = "params" if s.objective == "params" else "latency_ms_1"
    # Imported here: every sweep's driver and trial processes import this module, which need no Optuna.
    from ray.tune.search.optuna import OptunaSearch

    searcher = (OptunaSearch(metric=["validation_accuracy", cost], mode=["max", "min"], seed=cfg.seed)
                if s.algorithm == "optuna" else BasicVariantGenerator(random_state=cfg.seed))
    schedulers = {
        "smaller_first": lambda: SmallerFirst("validation_accuracy", cost, s.training.epochs, s.grace(),
                                              s.reduction_factor, s.target_relative * mentor_accuracy),
        "asha": lambda: ASHAScheduler(time_attr="epoch", metric="validation_accuracy", mode="max",
                                      max_t=s.training.epochs, grace_period=s.grace(),
                                      reduction_factor=s.reduction_factor),
        "none": FIFOScheduler,
    }
    scheduler = schedulers[s.scheduler]()
    return tune.Tuner(
        tune.with_resources(trainable, trial_resources(cfg)), param_space=draws,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=1 if s.algorithm == "grid" else s.num_samples,
                                    max_concurrent_trials=concurrency(cfg, ray.cluster_resources()),
                                    reuse_actors=True),
        run_config=run_config(name, storage, cfg.fault_tolerance.trial_retries),
    )


def run_search(cfg: SweepConfig, out: str, cache: str) -> ModelConfig:
    """Run (or resume, or read back) `cfg.search`; write `search.json`; the student it found, to be trained
    like any other under `cfg.search.name`."""
    s = cfg.search
    key = mentor_key(cfg)
    mentor = train_mentor(cfg, MentorFolder.at(cache, key))  # cached; the sweep's stages find it there
    deepest = architecture(s.student_space.conv_blocks[1], 1, 0, False)
    try:
        ModelSpec(deepest).check(mentor.test.shape, mentor.num_classes)
    except UserError as e:
        raise UserError(f"search.student_space.conv_blocks: {e}") from None
    data = search_data(cfg, mentor, mentor.files.search_slices)
    resources = cfg.resources.model_dump(exclude={"mentor"})  # the search trains students only
    search = s.model_dump() | {"training": training_identity(s.model_dump()["training"])}
    name = "search-" + digest({"mentor": key, "search": search, "resources": resources})
    trainable = tune.with_parameters(_search_trial, cfg=cfg, mentor=mentor, data=data, folder=f"{out}/search/{name}")
    results = _tuner(cfg, trainable, f"{out}/tune", name, data.mentor_accuracy).fit()
    raise_failures(results, "search")
    silent = [r for r in results if "validation_accuracy" not in (r.metrics or {})]
    if silent:
        raise RuntimeError(f"{len(silent)} search trial(s) ended without a score")
    candidates = tuple(_candidate(cfg, r.config, r.metrics, data) for r in results)
    best, met = winner(candidates, s.objective, s.target_relative)
    summary = SearchSummary(s.name, s.objective, s.target_relative, data.selection, s.algorithm, s.scheduler,
                            _mentor_figures(cfg, mentor, data), candidates, best.trial, met, s.training.epochs,
                            s.student_space.size)
    artifacts.write_json(summary, f"{out}/{SEARCH_FILE}")
    drawn = next(r.config for r in results if r.metrics["trial_id"] == best.trial)
    return _student(cfg, drawn, s.name)


def _candidate(cfg: SweepConfig, drawn: dict[str, Any], metrics: dict[str, Any], data: SearchData) -> Candidate:
    student = _student(cfg, drawn, "candidate")
    epochs = int(metrics["epoch"])
    return Candidate(metrics["trial_id"], student.architecture, student.width, int(metrics["params"]),
                     float(metrics["latency_ms_1"]), float(metrics["latency_ms_256"]), epochs,
                     float(metrics["validation_accuracy"]) / data.mentor_accuracy,
                     epochs < cfg.search.training.epochs, metrics.get("duplicate_of"))

