"""Student sets built by Ray Data: the variants keep what they should, reproducibly, and carry no true label."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from deepmimic.config import VariantConfig
from deepmimic.core import tables
from deepmimic.core.methods import METHODS
from deepmimic.distributed.data import write_image_table
from deepmimic.distributed.student_sets import OOD_ID_OFFSET, build_student_set, targets

CLASSES = ("a", "b", "c", "d")


def pool_files(tmp_path, digits):
    """A 400-image label-free pool, its true labels (experimenter's), 50 out-of-domain images,
    and soft labels for all."""
    images, labels = digits.train.images[:400], np.repeat(np.arange(4), 100)
    ids = np.arange(1000, 1400)
    pool = write_image_table(str(tmp_path / "pool.parquet"), images, ids, CLASSES)
    ood_ids = OOD_ID_OFFSET + np.arange(50)
    ood = write_image_table(str(tmp_path / "ood.parquet"), digits.train.images[400:450], ood_ids, CLASSES)
    tables.write_table(tables.label_table(ids, labels), str(tmp_path / "labels.parquet"))
    all_ids = np.concatenate([ids, ood_ids])
    probs = np.random.default_rng(0).dirichlet(np.ones(4), len(all_ids)).astype(np.float32)
    tables.write_table(tables.soft_label_table(all_ids[::-1], probs[::-1]), str(tmp_path / "soft.parquet"))
    return pool, ood, dict(zip(all_ids.tolist(), probs))


def build(tmp_path, pool, ood, variant, name, seed=0, on_ray=True):
    return build_student_set(pool, ood, str(tmp_path / "labels.parquet"), [str(tmp_path / "soft.parquet")],
                             variant, seed, str(tmp_path / name), on_ray=on_ray)


@pytest.mark.parametrize("on_ray", [True, False], ids=["ray-data", "in-driver"])
def test_unbalanced_set_keeps_each_class_above_its_bound_with_no_label(ray_local, digits, tmp_path, on_ray):
    pool, ood, probs = pool_files(tmp_path, digits)
    built = build(tmp_path, pool, ood, VariantConfig(removal_bound=0.6), "unbalanced", on_ray=on_ray)
    table = pq.read_table(built.table.uri)
    assert table.column_names == ["id", "image", "soft_label"]
    per_class = np.bincount((table.column("id").to_numpy() - 1000) // 100, minlength=4)
    assert np.all(per_class >= 40) and per_class.sum() == built.pool < 400 and built.ood == 0
    for row_id, soft in zip(table.column("id").to_pylist()[:20], tables.decode_soft_labels(table.column("soft_label"))):
        assert np.array_equal(soft, probs[row_id])  # each image beside its own soft label


def test_out_of_domain_set_adds_candidates_and_is_reproducible(digits, tmp_path):
    """Which images a variant draws (made in the driver: that Ray Data writes the same rows is tested below)."""
    pool, ood, _ = pool_files(tmp_path, digits)
    variant = VariantConfig(ood_ratio=0.3)
    a, b = (build(tmp_path, pool, ood, variant, name, on_ray=False) for name in ("a", "b"))
    c = build(tmp_path, pool, ood, variant, "c", seed=1, on_ray=False)
    ids = [np.sort(pq.read_table(s.table.uri).column("id").to_numpy()) for s in (a, b, c)]
    assert a.pool == 400 and 0 < a.ood <= 50 and (ids[0] >= OOD_ID_OFFSET).sum() == a.ood
    assert np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[0], ids[2])


def test_a_small_set_made_in_the_driver_holds_what_ray_data_writes(ray_local, digits, tmp_path):
    pool, ood, _ = pool_files(tmp_path, digits)
    variant = VariantConfig(removal_bound=0.3, ood_ratio=0.3)
    here, there = (pq.read_table(build(tmp_path, pool, ood, variant, name, on_ray=on_ray).table.uri).sort_by("id")
                   for name, on_ray in (("here", False), ("there", True)))
    assert here.num_rows > 300 and here.equals(there)


def test_a_finished_set_is_found_by_its_manifest(ray_local, digits, tmp_path):
    pool, ood, _ = pool_files(tmp_path, digits)
    first = build(tmp_path, pool, None, None, "plain")
    assert build(tmp_path, pool, None, None, "plain") == first and first.pool == 400


def test_targets_by_method():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    soft = tables.soft_label_table(np.array([5, 6]), probs)
    labels = tables.label_table(np.array([5, 6]), np.array([1, 1]))
    def decode(name, **knobs):
        return tables.decode_soft_labels(targets(METHODS[name](**knobs), soft, labels).column("soft_label"))

    assert np.array_equal(decode("deepmimic"), probs)
    assert np.allclose(decode("hinton", temperature=1.0), probs)
    softer = decode("hinton", temperature=4.0)
    assert np.allclose(softer.sum(1), 1) and np.all(softer.max(1) < probs.max(1))
    assert np.array_equal(softer.argmax(1), probs.argmax(1))
    assert decode("hard").tolist() == [[1, 0, 0], [0, 0, 1]]
    assert decode("supervised").tolist() == [[0, 1, 0], [0, 1, 0]]  # the pool's true labels: the reference run only
