"""Users' own data through the real CLI on the session's Ray: the README's example on `deepmimic
example-data`, a JPEG folder with a Parquet pool streamed through Ray Data, and a broken pool file."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from deepmimic.core import checkpoints, tables
from deepmimic.core.results import ExperimentResult
from deepmimic.core.soft_labels import soft_labels

from .conftest import DEEPMIMIC, ROOT, image_folder, parquet_images


def cli(ray, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return subprocess.run([*DEEPMIMIC, *args], capture_output=True, text=True, env=env, timeout=timeout)


def readme_example(folder: Path) -> dict:
    """The README's "Your own data" experiment, as written there, on `folder`."""
    text = (ROOT / "README.md").read_text().split("## Your own data", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    return yaml.safe_load(block.replace("DIR", str(folder)))


def student_sets(out: Path) -> list[Path]:
    return sorted(out.glob("mentors/*/student_sets/*/*/*.parquet"))


def test_readme_example_on_example_data(ray_local, tmp_path):
    made = cli(ray_local, "example-data", str(tmp_path / "digits"))
    assert made.returncode == 0 and "unlabeled/ 1078" in made.stdout, made.stderr
    assert len(list((tmp_path / "digits" / "unlabeled").iterdir())) == 1078
    config = readme_example(tmp_path / "digits")
    config["training"]["epochs"] = 15  # the README's 40 in the closing note; 15 keeps the suite short
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    proc = cli(ray_local, "run", str(tmp_path / "own.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ExperimentResult.from_json(json.loads((tmp_path / "out" / "result.json").read_text()))
    assert (result.sizes.mentor, result.sizes.student, result.sizes.test) == (269, 1078, 450)
    assert result.mentor.test_accuracy > 0.85 and result.students[0].test_accuracy > 0.85
    assert result.students[0].train_pool == 1078 and not result.students[0].streamed
    for shard in student_sets(tmp_path / "out"):
        assert pq.read_schema(shard).names == ["id", "image", "soft_label"]  # no label column to leak


def test_jpeg_folder_with_a_parquet_pool_streamed(ray_local, tmp_path):
    """Labelled JPEGs, a Parquet pool that carries a label column (never read), students streamed through Ray
    Data; what they learn from is the mentor's probabilities for the pool images, nothing else."""
    root = image_folder(tmp_path / "data", per_class=12, classes=3, suffix=".jpg", test=4)
    rng = np.random.default_rng(3)
    pool_classes = rng.integers(0, 3, 60)
    pool = (rng.integers(0, 40, (60, 8, 8)) + 60 * pool_classes[:, None, None]).astype(np.uint8)
    parquet_images(tmp_path / "pool" / "part-0.parquet", pool[:30], [int(c) for c in pool_classes[:30]])
    parquet_images(tmp_path / "pool" / "part-1.parquet", pool[30:], [int(c) for c in pool_classes[30:]])
    config = {
        "name": "streamed", "dataset": {"name": "image_folder", "root": str(root),
                                        "unlabeled": str(tmp_path / "pool" / "*.parquet")},
        "training": {"epochs": 4, "batch_size": 16}, "data": {"stream": "always", "label_actors": 2},
        "mentor": {"name": "M", "architecture": "c-mp-fc2", "width": 4},
        "students": [{"name": "S", "architecture": "c-fc", "width": 4}],
        "resources": {"cpus_per_worker": 0.5},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    proc = cli(ray_local, "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ExperimentResult.from_json(json.loads((tmp_path / "out" / "result.json").read_text()))
    student = result.students[0]
    assert student.streamed and student.train_pool == 60 and (result.sizes.mentor, result.sizes.test) == (36, 12)
    assert len(student.history) == 4
    rows = pq.ParquetDataset([str(p) for p in student_sets(tmp_path / "out")]).read().sort_by("id")
    assert rows.column_names == ["id", "image", "soft_label"]
    images = tables.decode_images(rows.column("image"), (1, 8, 8))
    assert np.array_equal(images[:, 0], pool)  # ids follow the files' rows
    mentor = checkpoints.load_model_at(result.mentor.checkpoint)
    expected = soft_labels(mentor, torch.from_numpy(images))
    assert np.allclose(tables.decode_soft_labels(rows.column("soft_label")), expected, atol=1e-5)


def test_a_broken_pool_image_stops_the_run_naming_it(ray_local, tmp_path):
    root = image_folder(tmp_path / "data", pool=6)
    broken = root / "unlabeled" / "batch-a" / "3.png"
    broken.write_bytes(broken.read_bytes()[:30])
    config = {"name": "broken", "dataset": {"name": "image_folder", "root": str(root),
                                            "unlabeled": str(root / "unlabeled")},
              "training": {"epochs": 1}, "mentor": {"name": "M", "architecture": "c-fc", "width": 4},
              "students": [{"name": "S", "architecture": "c-fc", "width": 4}]}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(config))
    proc = cli(ray_local, "run", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and f"{broken}: not a readable image" in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "mentors").exists()  # stopped before any training
    assert not list((tmp_path / "out").glob("pools/*/pool.json"))  # and nothing that looks finished
    proc = cli(ray_local, "run", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "out2"),
               "--set", "data.skip_unreadable=true", "--set", "data.batch_inference=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ExperimentResult.from_json(json.loads((tmp_path / "out2" / "result.json").read_text()))
    assert result.sizes.unreadable == 1 and result.students[0].pool_unreadable == 1
    assert result.students[0].train_pool == 5
