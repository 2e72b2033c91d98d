"""A student's training set as a Ray Dataset: the label-free pool, or an
unbalanced or out-of-domain variant of it, beside the mentor's soft labels.

Which ids a variant keeps is drawn from its seed in the driver (removal per
class needs the pool's true labels, which only the experimenter holds); Ray
Data then reads the images from Parquet, keeps those ids, attaches soft labels
and writes the set. The set has columns id, image, soft_label: no true label.
A set is built once per (mentor's soft labels, variant, seed) and found again
through `set.json`, written last; a set whose content no longer matches its
manifest is built again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from ..config import VariantConfig
from ..core import artifacts, tables
from ..core.methods import Method
from ..core.methods.deepmimic import DeepMimic
from ..core.results import Json
from ..core.splits import out_of_domain, unbalanced
from .data import TableInfo

OOD_ID_OFFSET = 1 << 40  # out-of-domain ids never collide with the data set's own
IN_DRIVER_BYTES = 64 << 20  # image bytes below which a set is made in the driver, not by Ray Data
PAPERS = DeepMimic()  # the method of sets built without one


@dataclass(frozen=True)
class StudentSet(Json):
    table: TableInfo   # a folder of Parquet files: id, image, soft_label
    pool: int          # images kept from the student pool
    ood: int           # out-of-domain images added
    unreadable: int = 0  # files of a separate pool skipped as unreadable (`data.skip_unreadable`)


def choose_ids(pool_ids: np.ndarray, pool_labels: np.ndarray | None, ood_rows: int, variant: VariantConfig | None,
               seed: int, num_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The pool ids a variant keeps and the out-of-domain ids it adds, drawn from `seed`. A separate pool
    (`pool_labels` None) has no classes: out-of-domain images are drawn as for `num_classes` equal classes."""
    keep = np.arange(len(pool_ids))
    if pool_labels is None:
        pool_labels = np.arange(len(pool_ids)) % num_classes  # only the class sizes are read
    if variant and variant.removal_bound > 0:
        keep = unbalanced(pool_labels, variant.removal_bound, seed)
    ood = np.zeros(0, np.int64)
    if variant and variant.ood_ratio > 0 and ood_rows:
        ood = OOD_ID_OFFSET + out_of_domain(pool_labels[keep], ood_rows, variant.ood_ratio, seed)
    return pool_ids[keep], ood


def _keep(batch: pa.Table, ids: np.ndarray) -> pa.Table:
    return batch.filter(pc.is_in(batch.column("id"), pa.array(ids, pa.int64())))


def _attach(batch: pa.Table, soft_ids: np.ndarray, soft: pa.Table) -> pa.Table:
    # Arrow's join cannot carry a fixed-size-list column, so match ids by binary search (soft_ids sorted).
    want = batch.column("id").to_numpy()
    at = np.clip(np.searchsorted(soft_ids, want), 0, max(len(soft_ids) - 1, 0))
    if len(want) and not np.array_equal(soft_ids[at], want):
        raise RuntimeError(f"soft labels missing for {int((soft_ids[at] != want).sum())} images")
    return batch.append_column("soft_label", soft.column("soft_label").take(pa.array(at)))


def targets(method: Method, soft: pa.Table, pool_labels: pa.Table) -> pa.Table:
    """What a student learns from (columns id, soft_label): the method's rows, made from the mentor's
    probabilities, or from the pool's true labels for the one method that takes them."""
    labels = None
    if method.true_labels:
        soft = soft.filter(pc.is_in(soft.column("id"), pool_labels.column("id"))).sort_by("id")
        labels = pool_labels.sort_by("id").column("label").to_numpy()
    probs = tables.decode_soft_labels(soft.column("soft_label"))
    return tables.soft_label_table(soft.column("id").to_numpy(), method.targets(probs, labels))


def student_dataset(sources: list[TableInfo], keep: list[np.ndarray], target: pa.Table) -> ray.data.Dataset:
    """The kept images of each source beside their targets, as a lazy Ray Dataset."""
    soft = target.sort_by("id")
    parts = [ray.data.read_parquet(info.uri).select_columns(["id", "image"])
             .map_batches(_keep, fn_kwargs={"ids": ids}, batch_format="pyarrow", zero_copy_batch=True)
             for info, ids in zip(sources, keep) if len(ids)]
    data = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return data.map_batches(_attach, fn_kwargs={"soft_ids": soft.column("id").to_numpy(), "soft": soft},
                            batch_format="pyarrow", zero_copy_batch=True)


def _write_here(sources: list[TableInfo], keep: list[np.ndarray], target: pa.Table, uri: str) -> None:
    """`student_dataset`'s rows made in this process with the same steps, into the same folder layout."""
    soft = target.sort_by("id")
    parts = [_keep(tables.read(info.uri, ["id", "image"]), ids) for info, ids in zip(sources, keep) if len(ids)]
    tables.write_folder(_attach(pa.concat_tables(parts), soft.column("id").to_numpy(), soft), uri)


def build_student_set(pool: TableInfo, ood: TableInfo | None, pool_labels_uri: str | None, soft_uris: list[str],
                      variant: VariantConfig | None, seed: int, folder: str, method: Method = PAPERS,
                      on_ray: bool | None = None, unreadable: int = 0, answered_only: bool = False,
                      rebuilt: Callable[[str], None] | None = None) -> StudentSet:
    """Write (or find) the student set of one variant under `folder`.

    Ray Data writes into a fresh sub-folder; its manifest and then `set.json`
    naming it come last, so a set interrupted half-way is never mistaken for a
    finished one. `answered_only`: the mentor answered part of the pool (a query budget), and the set keeps
    those images (the variant's draw among them). `rebuilt(uri)` is told of a finished set found damaged (a bad
    byte, cut off) and made again. A set smaller than `IN_DRIVER_BYTES` (`on_ray` None) is made
    by the same steps in this process: Ray Data's start-up cost a quickstart
    sweep more than its thousand 8×8 images did (benchmarks/RESULTS.md).
    """
    found, _ = _finished(f"{folder}/set.json")
    if found:
        return found
    with artifacts.exclusive(f"{folder}.lock", "a student set"):  # sweeps sharing the cache build it once
        found, damaged = _finished(f"{folder}/set.json")
        if found:
            return found
        built = _build(pool, ood, pool_labels_uri, soft_uris, variant, seed, folder, method, on_ray, unreadable,
                       answered_only)
        if damaged and rebuilt is not None:
            rebuilt(damaged)
        return built


def _finished(pointer: str) -> tuple[StudentSet | None, str]:
    """The set `pointer` names if it still matches its manifests; else none, and what no longer matches where a
    set was finished there ("" where none was)."""
    checked = pointer
    try:
        found = StudentSet.from_json(artifacts.read_json(pointer))
        checked = found.table.uri
        artifacts.verify(checked)
        return found, ""
    except artifacts.TornArtifact as e:
        if not artifacts.exists(pointer):
            return None, ""
        print(f"rebuilding a student set: {e}", flush=True)
        return None, checked


def _build(pool: TableInfo, ood: TableInfo | None, pool_labels_uri: str | None, soft_uris: list[str],
           variant: VariantConfig | None, seed: int, folder: str, method: Method, on_ray: bool | None,
           unreadable: int, answered_only: bool) -> StudentSet:
    # A separate pool has no labels: its ids come from its own table, whose label column never existed.
    labels = tables.read(pool_labels_uri) if pool_labels_uri else tables.read(pool.uri, ["id"])
    pool_ids, ood_ids = choose_ids(labels.column("id").to_numpy(),
                                   labels.column("label").to_numpy() if pool_labels_uri else None,
                                   ood.rows if ood else 0, variant, seed, len(pool.class_names))
    sources = [pool] + ([ood] if ood else [])
    uri = f"{folder}/{uuid.uuid4().hex}"
    soft = pa.concat_tables([tables.read(u) for u in soft_uris])
    target = targets(method, soft, labels)
    if answered_only:
        pool_ids = pool_ids[np.isin(pool_ids, target.column("id").to_numpy())]
    size = sum(info.rows * int(np.prod(info.shape)) for info in sources)
    if on_ray if on_ray is not None else size > IN_DRIVER_BYTES:
        student_dataset(sources, [pool_ids, ood_ids], target).write_parquet(uri)
    else:
        _write_here(sources, [pool_ids, ood_ids], target, uri)
    rows = tables.read(uri, ["id"]).num_rows
    if rows != len(pool_ids) + len(ood_ids):
        raise RuntimeError(f"{uri}: wrote {rows} rows, expected {len(pool_ids) + len(ood_ids)}")
    artifacts.seal(uri, rows)
    built = StudentSet(TableInfo(uri, rows, pool.shape, pool.class_names, pool.mean, pool.std),
                       len(pool_ids), len(ood_ids), unreadable)
    artifacts.write_json(built, f"{folder}/set.json")
    return built
