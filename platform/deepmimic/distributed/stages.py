"""The two stages of every experiment: a mentor (trained once, cached by the
hash of what determines it) and the students that learn from its soft labels."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import ray
import torch

from .. import plots
from ..config import BlackBoxMentorConfig, EnsembleConfig, ExperimentConfig, ModelConfig
from ..core import artifacts, tables
from ..core.datasets import load_dataset
from ..core.evaluation import agreement, paired_bootstrap, predict_logits, probability_metrics
from ..core.images import Dataset, ImageSet, hold_out_classes, select_classes
from ..core.results import Json, MentorResult, RunSummary, StudentResult
from ..core.soft_labels import combine
from ..core.splits import Split, stratified_split
from ..errors import UserError
from .data import TableInfo, write_image_table, write_split
from .pool import Pool, checkpoint_at, ingest, label, pool_made
from .progress import Progress
from .soft_labeling import label_images
from .student_sets import OOD_ID_OFFSET, StudentSet, build_student_set
from .train import RunSpec, Trained, fit, load_model

NOT_LEARNED = {"eval_every", "cuda_graph"}  # how often a run is scored, how its steps are launched


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object; `NOT_LEARNED`'s keys left out wherever they stand: they change
    nothing a run learns (a graphed step's rounding differs as a GPU's does from a CPU's, and the device is in
    no key either), so cached mentors and finished trials stay valid across them."""
    def what_is_trained(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: what_is_trained(v) for k, v in node.items() if k not in NOT_LEARNED}
        return [what_is_trained(v) for v in node] if isinstance(node, list) else node

    return hashlib.sha256(json.dumps(what_is_trained(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def mentor_key(cfg: ExperimentConfig) -> str:
    """What determines a mentor and its soft labels: data, split, seed, mentor, out-of-domain source."""
    ood = cfg.ood.model_dump() if cfg.ood else None
    data = cfg.dataset.key() | ({"skip_unreadable": True} if cfg.data.skip_unreadable else {})
    return digest({"dataset": data, "split": cfg.split.model_dump(), "seed": cfg.seed,
                   "mentor": cfg.mentor.model_dump(), "ood": ood})


def mentor_folder(cache: str, key: str) -> str:
    """Where the mentor of `key` and its tables live under a cache (or a run's folder)."""
    return f"{cache}/mentors/{key}"


def _with_method(parts: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """`parts` plus the method where it is not the paper's, so the paper's keys stay as they were."""
    method = (cfg.method, cfg.loss_temperature)
    return parts if method == ("deepmimic", 1.0) else {**parts, "method": method}


def student_key(cfg: ExperimentConfig, student: ModelConfig) -> str:
    parts = {"mentor": mentor_key(cfg), "student": student.model_dump(), "variant": cfg.variant.model_dump()}
    return digest(_with_method(parts, cfg))


@dataclass(frozen=True)
class MentorOutcome(Json):
    """Everything a student trial needs from its mentor, all on shared storage."""

    folder: str
    result: MentorResult
    test_predictions: list[int]
    student: TableInfo | None       # the pool: id, image (no label); None: a separate pool (`pool.py`)
    test: TableInfo
    ood: TableInfo | None
    num_classes: int
    trained: bool = False           # False when it came from the cache

    @property
    def pool_separate(self) -> bool:
        return self.student is None

    @property
    def soft_labels(self) -> str:
        return f"{self.folder}/soft_labels.parquet"

    @property
    def test_probabilities(self) -> str:
        return f"{self.folder}/test_probabilities.parquet"

    @property
    def pool_labels(self) -> str:
        """The pool's true labels: read only to build Table 3's variants, never by a student."""
        return f"{self.folder}/data/pool_labels.parquet"

    def artifacts(self) -> list[str]:
        """Every table a student stage reads from this mentor's folder."""
        if self.pool_separate:  # its pool and soft labels are made and checked after this stage
            return [t.uri for t in [self.test, self.ood] if t] + [self.test_probabilities] + (
                [self.soft_labels] if self.ood else [])
        tables_ = [self.student, self.test] + ([self.ood] if self.ood else [])
        return [t.uri for t in tables_] + [self.soft_labels, self.test_probabilities, self.pool_labels]


def _summary(trained: Trained) -> dict[str, Any]:
    """A run's summary as the fields every model result shares."""
    return {f.name: getattr(trained.summary, f.name) for f in dataclasses.fields(RunSummary)}


def run_spec(cfg: ExperimentConfig, role: str, model: ModelConfig, data: TableInfo, target: str, test: TableInfo,
             num_classes: int, folder: str, in_trial: bool, progress: Progress | None = None) -> RunSpec:
    """One training run of `model`, made from the validated config. `in_trial`: the caller is a Tune
    trial holding one worker's resources, where a single-worker run trains in the trial's own process."""
    return RunSpec(
        name=f"{role}-{model.name}-{os.path.basename(folder)}", storage=f"{folder}/ray", model=model.spec(),
        hyper=model.training, seed=cfg.seed if model.seed is None else model.seed,
        temperature=cfg.loss_temperature if role == "student" else 1.0, train=data, target=target, test=test,
        num_classes=num_classes, resources=cfg.resources.of(role), inference_repeats=cfg.inference_repeats,
        checkpoint_every=cfg.fault_tolerance.checkpoint_every, worker_restarts=cfg.fault_tolerance.worker_restarts,
        in_process=_in_process(cfg, in_trial, role), stream=role == "student" and streams(cfg, data),
        data_cpus=cfg.data.data_cpus, read_ahead=cfg.data.read_ahead, progress=progress,
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


def _in_process(cfg: ExperimentConfig, in_trial: bool, role: str) -> bool:
    """Whether a `role`'s run works in this process: a single-worker run in a Tune trial that holds its
    resources."""
    return in_trial and cfg.resources.of(role).num_workers == 1


def _load(cfg: ExperimentConfig) -> tuple[Dataset, Any]:
    """The data set, and the out-of-domain candidates where the config names some."""
    dataset, ood = load_dataset(cfg.source()), cfg.ood
    if ood is None:
        return dataset, None
    try:
        if ood.source == "held_out":
            return hold_out_classes(dataset, ood.classes)
        other = load_dataset(ood.dataset.name, ood.dataset.root)
        images = select_classes(other.train, ood.classes)
    except ValueError as e:
        raise UserError(f"ood.classes: {e}") from None
    if images.shape != dataset.train.shape:
        raise UserError(f"ood.dataset: images are {images.shape}, but {dataset.name}'s are {dataset.train.shape}")
    return dataset, images


def _cached_mentor(done: str, key: str) -> MentorOutcome | None:
    """The finished mentor stage recorded in `done`, if every table it wrote still matches its manifest."""
    try:
        outcome = dataclasses.replace(MentorOutcome.from_json(artifacts.read_json(done)), trained=False)
    except artifacts.TornArtifact:  # never finished, or cut off
        return None
    try:
        for uri in outcome.artifacts():
            artifacts.verify(uri, key)
    except artifacts.TornArtifact as e:
        # Redo the stage: Ray Train finds the final checkpoint, so the mentor is not trained again.
        print(f"mentor {key}: rebuilding its data and soft labels ({e})", flush=True)
        return None
    return outcome


def train_mentor(cfg: ExperimentConfig, folder: str, dataset: Dataset | None = None, split: Split | None = None,
                 in_trial: bool = False, progress: Progress | None = None) -> MentorOutcome:
    """Train the mentor (or ask a black box, or combine an ensemble's members) and
    label its pool and test set, or load all of it from `folder` if done before.

    `mentor.json`, written last, marks a finished mentor stage; its tables are
    checked against their manifests before they are used again. An ensemble's
    members are mentors of their own, beside it, each trained once. `in_trial`:
    called in a Tune trial holding one worker's resources (see `run_spec`). `progress`: where a
    mentor trained here tells its epochs as it trains (a sweep's live MLflow run), and draws that run's figures.
    """
    key = mentor_key(cfg)
    done = f"{folder}/mentor.json"
    cached = _cached_mentor(done, key)
    if cached:
        return cached
    # Sweeps sharing the cache make each mentor once: a second one waits here, then finds it made.
    with artifacts.exclusive(f"{folder}.lock", f"mentor {key}"):
        return _cached_mentor(done, key) or _make_mentor(cfg, folder, key, dataset, split, in_trial, progress)


def _make_mentor(cfg: ExperimentConfig, folder: str, key: str, dataset: Dataset | None, split: Split | None,
                 in_trial: bool, progress: Progress | None) -> MentorOutcome:
    done = f"{folder}/mentor.json"
    clock = [time.perf_counter()]
    times: dict[str, float] = {}

    def lap(stage: str) -> None:
        now = time.perf_counter()
        times[stage] = round(now - clock[0], 3)
        clock[0] = now

    given = (dataset, split)
    ood_images = None
    if dataset is None:
        dataset, ood_images = _load(cfg)
    if cfg.pool_separate:  # every labelled training image is the mentor's; the pool comes later, by Ray Data
        split = Split(np.arange(len(dataset.train)), np.zeros(0, np.int64))
    split = split or stratified_split(dataset.train.labels, cfg.split.mentor_ratio, cfg.seed)
    data = write_split(dataset, split, f"{folder}/data", key, pool=not cfg.pool_separate)
    if not cfg.pool_separate:
        tables.write_table(tables.label_table(dataset.train.ids[split.student], dataset.train.labels[split.student]),
                           f"{folder}/data/pool_labels.parquet", key)
    ood = None
    if ood_images is not None:
        ood = write_image_table(f"{folder}/data/ood.parquet", ood_images.images,
                                OOD_ID_OFFSET + np.arange(len(ood_images)), dataset.train.class_names, producer=key)
    lap("load_and_split")
    num_classes, mentor = dataset.train.num_classes, cfg.mentor
    # as MentorOutcome names them
    soft_uri, test_uri = f"{folder}/soft_labels.parquet", f"{folder}/test_probabilities.parquet"
    pool = [data.student] if data.student else []
    jobs = {soft_uri: pool + ([ood] if ood else []), test_uri: [data.test]}  # the test set last
    jobs = {uri: sources for uri, sources in jobs.items() if sources}
    if isinstance(mentor, ModelConfig):
        spec = run_spec(cfg, "mentor", mentor, data.mentor, "label", data.test, num_classes, folder, in_trial,
                        progress)
        trained = fit(spec)
        lap("train_mentor")
        label_images(trained.checkpoint, jobs, spec.resources, spec.in_process, key)
        lap("soft_labels")
        result = MentorResult(**_summary(trained), name=mentor.name, architecture=mentor.architecture,
                              checkpoint=trained.checkpoint.path, stage_times_s=times)
        if progress is not None:
            result = dataclasses.replace(result, figures=plots.run_figures([result], folder))
        test_predictions = trained.test_predictions
    else:
        result, test_predictions = _answered(cfg, folder, key, jobs, given, data.test, num_classes, in_trial)
        lap("soft_labels")
        result = dataclasses.replace(result, stage_times_s=times)
    outcome = MentorOutcome(folder, result, test_predictions.tolist(), data.student, data.test, ood, num_classes, True)
    artifacts.write_json(outcome, done)
    return outcome


def _answered(cfg: ExperimentConfig, folder: str, key: str, jobs: dict[str, list[TableInfo]],
              given: tuple[Dataset | None, Split | None], test_info: TableInfo, num_classes: int,
              in_trial: bool) -> tuple[MentorResult, np.ndarray]:
    """A black box or an ensemble: write its answers for `jobs`, and score the test set's, which comes last."""
    mentor, soft_uri, test_uri = cfg.mentor, f"{folder}/soft_labels.parquet", f"{folder}/test_probabilities.parquet"
    if isinstance(mentor, BlackBoxMentorConfig):
        answered, queries = label_images(mentor.black_box, jobs, cfg.resources.of("mentor"),
                                         _in_process(cfg, in_trial, "mentor"), key)
        description, seconds = f"black box ({mentor.black_box.kind})", answered[test_uri]
    else:
        members = [train_mentor(member_config(cfg, m), member_folder(folder, cfg, m), *given, in_trial)
                   for m in mentor.members]
        seconds = _combine(members, mentor.rule, soft_uri, test_uri, key)
        description = f"ensemble ({mentor.rule}): " + " + ".join(m.result.name for m in members)
        asked = [m.result.queries for m in members if m.result.queries]
        queries = sum(asked[1:], asked[0]) if asked else None
    test = tables.read(test_uri).sort_by("id")
    probs = tables.decode_soft_labels(test.column("soft_label"))
    labels = tables.read(test_info.uri, ["id", "label"]).sort_by("id").column("label").to_numpy()
    result = MentorResult(name=mentor.name, architecture=description, params=None, inference_time_s=seconds,
                          queries=queries, **probability_metrics(probs, labels, num_classes))
    return result, _in_table_order(probs.argmax(1), test.column("id").to_numpy(), test_info)


def member_config(cfg: ExperimentConfig, member: Any) -> ExperimentConfig:
    """The experiment as if an ensemble's `member` were its only mentor (same data, split and seed)."""
    return cfg.model_copy(update={"mentor": member})


def member_folder(folder: str, cfg: ExperimentConfig, member: Any) -> str:
    """Members live beside their ensemble in the mentor cache, where single-mentor experiments find them too."""
    return f"{os.path.dirname(folder)}/{mentor_key(member_config(cfg, member))}"


def _combine(members: list[MentorOutcome], rule: str, soft_uri: str, test_uri: str, producer: str) -> float:
    """Write the ensemble's soft labels and test probabilities from its members'; return the members' summed
    test-set inference time (an ensemble asks every member)."""
    if members[0].artifacts().count(members[0].soft_labels):  # a separate pool without out-of-domain images: none
        combine_tables([m.soft_labels for m in members], rule, soft_uri, producer)
    combine_tables([m.test_probabilities for m in members], rule, test_uri, producer)
    return sum(m.result.inference_time_s for m in members)


def combine_tables(members: list[str], rule: str, uri: str, producer: str) -> None:
    """One soft-label table at `uri` from the members' tables of the same images, combined by `rule`."""
    answers = [tables.read(member).sort_by("id") for member in members]
    ids = answers[0].column("id")
    if any(not a.column("id").equals(ids) for a in answers[1:]):
        raise RuntimeError(f"{uri}: ensemble members labelled different images")
    combined = combine([tables.decode_soft_labels(a.column("soft_label")) for a in answers], rule)
    tables.write_table(tables.soft_label_table(ids.to_numpy(), combined), uri, producer)


def _in_table_order(values: np.ndarray, ids: np.ndarray, info: TableInfo) -> np.ndarray:
    """`values` given for sorted `ids`, reordered to the rows of `info`'s table (how test predictions are kept)."""
    order = tables.read(info.uri, ["id"]).column("id").to_numpy()
    return values[np.searchsorted(ids, order)]


def student_set(cfg: ExperimentConfig, mentor: MentorOutcome) -> StudentSet:
    """The student pool variant `cfg` asks for, labelled by `mentor`; built once, kept beside the mentor."""
    if mentor.pool_separate:
        pool, unreadable = separate_pool(cfg, mentor)
        soft = [pool_soft_labels(cfg, mentor, pool)] + ([mentor.soft_labels] if mentor.ood else [])
        labels: Any = [artifacts.read_manifest(uri)["sha256"] for uri in soft]
        pool_labels = None
    else:
        pool, unreadable, soft, pool_labels = mentor.student, 0, [mentor.soft_labels], mentor.pool_labels
        labels = artifacts.read_manifest(mentor.soft_labels)["sha256"]
    # New soft labels, new sets (their manifest was checked with the mentor).
    what = _with_method({"variant": cfg.variant.model_dump(), "labels": labels}, cfg)
    folder = f"{mentor.folder}/student_sets/{digest(what)}"
    return build_student_set(pool, mentor.ood, pool_labels, soft, cfg.variant, cfg.seed, folder, cfg.method,
                             cfg.loss_temperature, unreadable=unreadable)


def pool_key(cfg: ExperimentConfig) -> str:
    """What determines a separate pool's shards: the files read and how."""
    return digest({"dataset": cfg.dataset.key(), "skip_unreadable": cfg.data.skip_unreadable})


def prepare_pool(cfg: ExperimentConfig, root: str) -> Pool:
    """A separate pool's Parquet shards under `root/pools/` (made once for every mentor reading the same
    files), decoded before any training starts so that a broken file stops the run first."""
    folder = f"{root}/pools/{pool_key(cfg)}"
    found = pool_made(folder)
    if found:
        return found
    shape = load_dataset(cfg.source()).train.shape  # the labelled images': the pool's are made the same
    return ingest(cfg.source(), shape, folder, on_ray=True if cfg.data.batch_inference else None)


def separate_pool(cfg: ExperimentConfig, mentor: MentorOutcome) -> tuple[TableInfo, int]:
    """The separate pool's table, named with the mentor's classes, and its count of skipped unreadable files."""
    made = prepare_pool(cfg, os.path.dirname(os.path.dirname(mentor.folder)))  # beside `…/mentors/KEY`
    return dataclasses.replace(made.table, class_names=mentor.test.class_names), made.unreadable


def pool_soft_labels(cfg: ExperimentConfig, mentor: MentorOutcome, pool: TableInfo) -> str:
    """The mentor's probabilities for every image of a separate pool (`pool_soft_labels/` beside it), made
    once: by Ray Data batch inference (an ensemble: by each member, then combined)."""
    uri = f"{mentor.folder}/pool_soft_labels"
    if artifacts.intact(uri):
        return uri
    with artifacts.exclusive(f"{mentor.folder}/pool_soft_labels.lock", "a pool's soft labels"):
        if artifacts.intact(uri):
            return uri
        if isinstance(cfg.mentor, EnsembleConfig):
            members = [pool_soft_labels(member_config(cfg, m), train_mentor(member_config(cfg, m),
                                                                            member_folder(mentor.folder, cfg, m)), pool)
                       for m in cfg.mentor.members]
            combine_tables(members, cfg.mentor.rule, uri, mentor_key(cfg))
        else:
            asked = cfg.mentor.black_box if isinstance(cfg.mentor, BlackBoxMentorConfig) else checkpoint_at(
                mentor.result.checkpoint)
            seconds = label(asked, pool, uri, cfg.resources, cfg.data.label_actors, mentor_key(cfg))
            print(f"mentor {mentor.result.name}: labelled {pool.rows} pool images in {seconds:.1f} s "
                  f"({cfg.data.label_actors} Ray Data actor(s))", flush=True)
    return uri


def train_student(cfg: ExperimentConfig, student: ModelConfig, mentor: MentorOutcome, data: StudentSet,
                  folder: str, in_trial: bool = False, progress: Progress | None = None) -> StudentResult:
    """Train the student on its set's targets and compare it with its mentor (`progress`: see `train_mentor`)."""
    spec = run_spec(cfg, "student", student, data.table, "soft_label", mentor.test, mentor.num_classes, folder,
                    in_trial, progress)
    trained = fit(spec)
    test = tables.to_image_set(tables.read(mentor.test.uri), mentor.test.shape, mentor.test.class_names)
    result = StudentResult(**_summary(trained), name=student.name, architecture=student.architecture,
                           checkpoint=trained.checkpoint.path, method=cfg.method, temperature=spec.temperature,
                           relative_accuracy=trained.summary.test_accuracy / mentor.result.test_accuracy,
                           train_pool=data.pool, train_ood=data.ood, pool_unreadable=data.unreadable,
                           **fidelity(trained, mentor, test.labels),
                           galleries=_galleries(trained, mentor, test, student.name, folder))
    # For its MLflow run: drawn here, in parallel with other trials, not by the sweep's one MLflow writer (0.2 s).
    if progress is not None:
        result = dataclasses.replace(result, figures=plots.run_figures([mentor.result, result], folder))
    return result


def _galleries(trained: Trained, mentor: MentorOutcome, test: ImageSet, name: str, folder: str) -> str:
    """Figs. 6-7 for this student beside its other files: test images both models get right, the mentor
    alone, the student alone (0.2 s here)."""
    path = f"{folder}/galleries.png"
    plots.galleries(test.images, test.labels, np.asarray(mentor.test_predictions), trained.test_predictions,
                    list(test.class_names), f"{name} and {mentor.result.name}", path)
    return path


def fidelity(trained: Trained, mentor: MentorOutcome, labels: np.ndarray) -> dict[str, float | None]:
    """How closely a student follows its mentor (StudentResult's fields of that name) on the test set's
    `labels`: agreement on the test set and on the out-of-domain candidates, its accuracy on the test samples
    the mentor gets wrong, and a paired bootstrap interval of its accuracy minus the mentor's."""
    mentor_preds, preds = np.asarray(mentor.test_predictions), trained.test_predictions
    wrong = mentor_preds != labels
    ood_agreement = None
    if mentor.ood is not None:
        images = tables.read(mentor.ood.uri, ["id", "image"]).sort_by("id")
        soft = tables.read(mentor.soft_labels).sort_by("id")
        soft = soft.filter(pc.is_in(soft.column("id"), images.column("id")))
        model = load_model(trained.checkpoint)
        x = torch.from_numpy(tables.decode_images(images.column("image"), mentor.ood.shape))
        student_ood = predict_logits(model, x).argmax(1).numpy()
        ood_agreement = agreement(student_ood, tables.decode_soft_labels(soft.column("soft_label")).argmax(1))
    low, high = paired_bootstrap(mentor_preds == labels, preds == labels)
    return {"agreement": agreement(preds, mentor_preds),
            "accuracy_where_mentor_wrong": float(np.mean(preds[wrong] == labels[wrong])) if wrong.any() else None,
            "ood_agreement": ood_agreement, "accuracy_gap_low": low, "accuracy_gap_high": high}
