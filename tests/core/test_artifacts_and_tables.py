import numpy as np
import pyarrow.parquet as pq
import pytest

from deepmimic.core import artifacts, tables


def test_image_table_round_trip_without_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    ids = np.array([10, 11, 12, 13, 14])
    uri = str(tmp_path / "pool.parquet")
    tables.write_table(tables.image_table(images, ids), uri)
    table = tables.read(uri)
    assert table.column_names == ["id", "image"]  # no label column at all
    back = tables.to_image_set(table.slice(1), (3, 4, 4), ("a", "b"))
    assert np.array_equal(back.images, images[1:]) and back.ids.tolist() == [11, 12, 13, 14]


def test_soft_label_table_round_trip(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=4).astype(np.float32)
    uri = str(tmp_path / "soft.parquet")
    tables.write_table(tables.soft_label_table(np.arange(4), probs), uri)
    table = tables.read(uri)
    assert table.column_names == ["id", "soft_label"]
    assert np.array_equal(tables.decode_soft_labels(table.column("soft_label")), probs)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    uri = str(tmp_path / "t.parquet")
    tables.write_table(tables.soft_label_table(np.arange(2), np.ones((2, 2), np.float32)), uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet", "t.parquet.manifest.json"]
    assert pq.read_metadata(uri).num_rows == 2


def soft_file(tmp_path, producer="mentor-1"):
    uri = str(tmp_path / "soft.parquet")
    tables.write_table(tables.soft_label_table(np.arange(100), np.ones((100, 3), np.float32)), uri, producer)
    return uri


def test_manifest_records_rows_hash_and_producer(tmp_path):
    manifest = artifacts.verify(soft_file(tmp_path), "mentor-1")
    assert manifest["rows"] == 100 and len(manifest["sha256"]) == 64


def test_a_truncated_table_is_torn(tmp_path):
    uri = soft_file(tmp_path)
    with open(uri, "r+b") as f:
        f.truncate(200)
    with pytest.raises(artifacts.TornArtifact, match="soft.parquet"):
        artifacts.verify(uri)


def test_a_table_from_another_producer_is_torn(tmp_path):
    with pytest.raises(artifacts.TornArtifact, match="expected mentor-2"):
        artifacts.verify(soft_file(tmp_path), "mentor-2")


def test_a_table_without_manifest_is_torn(tmp_path):
    uri = soft_file(tmp_path)
    (tmp_path / "soft.parquet.manifest.json").unlink()
    with pytest.raises(artifacts.TornArtifact, match="no manifest"):
        artifacts.verify(uri)


def test_a_json_result_is_read_only_when_it_matches_its_manifest(tmp_path):
    uri = str(tmp_path / "trial.json")
    artifacts.write_json({"accuracy": 0.97}, uri)
    assert artifacts.read_json(uri) == {"accuracy": 0.97}
    (tmp_path / "trial.json").write_text('{"accuracy": 0.9')  # a torn rewrite
    assert not artifacts.intact(uri)
    with pytest.raises(artifacts.TornArtifact, match="trial.json: content does not match"):
        artifacts.read_json(uri)
