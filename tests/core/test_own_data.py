"""Users' own images: ImageFolder folders and Parquet files, read into the core's image sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepmimic.core.datasets import load_dataset
from deepmimic.core.datasets.image_files import ImageFormat
from deepmimic.core.datasets.pool import decode_part, list_pool
from deepmimic.core.datasets.source import Source
from deepmimic.errors import UserError

from ..conftest import broken_image_folder, image_folder, parquet_images


def folder(root: Path, **kw) -> Source:
    return Source("image_folder", root, **kw)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_image_folder_reads_classes_by_folder_name(tmp_path, suffix):
    # WebP has no grey mode: its images read as RGB unless `channels: 1` says otherwise
    d = load_dataset(folder(image_folder(tmp_path, suffix=suffix), image=ImageFormat(channels=1)))
    assert d.train.class_names == ("class0", "class1", "class2")
    assert d.train.images.shape == (12, 1, 8, 8) and d.test.images.shape == (6, 1, 8, 8)
    assert list(d.train.labels) == [0] * 4 + [1] * 4 + [2] * 4
    # the pixels say the class (60 per class, noise below 40), JPEG's loss included
    assert np.all(d.train.images.reshape(12, -1).mean(1) // 60 == d.train.labels)


def test_without_test_folder_a_stratified_part_is_held_out(tmp_path):
    d = load_dataset(folder(image_folder(tmp_path, per_class=10, test=0), test_ratio=0.3))
    assert len(d.test) == 9 and len(d.train) == 21
    assert np.bincount(d.test.labels).tolist() == [3, 3, 3]
    assert not set(d.train.images.reshape(21, -1).sum(1)) & set(d.test.images.reshape(9, -1).sum(1))


def test_image_size_resizes_and_channels_convert(tmp_path):
    d = load_dataset(folder(image_folder(tmp_path, side=12), image=ImageFormat((8, 10), 3)))
    assert d.train.images.shape == (12, 3, 8, 10)
    assert np.array_equal(d.train.images[:, 0], d.train.images[:, 2])  # grey stays grey in RGB


def test_rgb_images_stay_rgb(tmp_path):
    assert load_dataset(folder(image_folder(tmp_path, mode="RGB"))).train.shape == (3, 8, 8)


@pytest.mark.parametrize("how, fragment", [
    ("corrupt", "class0/0.png: not a readable image"),
    ("truncated", "class1/1.png: not a readable image"),
    ("not an image", "labels.csv: not an image file"),
    ("empty class", "class3: empty class folder"),
    ("sizes", "images of different sizes: "),
    ("folder inside a class", "class0/unlabeled: a folder inside class folder"),
    ("loose file", "train/0.png: a file directly in train/"),
])
def test_a_broken_folder_is_one_line_naming_the_file(tmp_path, how, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")) as e:
        load_dataset(folder(broken_image_folder(tmp_path / "data", how)))
    assert "\n" not in str(e.value)


def test_different_sizes_name_two_files(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset(folder(broken_image_folder(tmp_path / "data", "sizes")))
    assert "is 8×8" in str(e.value) and "large.png is 16×16" in str(e.value) and "image_size" in str(e.value)


def digits_like(n: int, side: int = 8) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (n, side, side), dtype=np.uint8)


@pytest.mark.parametrize("encoded", [True, False])
def test_parquet_with_string_labels(tmp_path, encoded):
    images = digits_like(12)
    labels = ["cat", "dog", "eel"] * 4
    parquet_images(tmp_path / "train" / "a.parquet", images[:6], labels[:6], encoded)
    parquet_images(tmp_path / "train" / "b.parquet", images[6:], labels[6:], encoded)
    parquet_images(tmp_path / "test.parquet", images[:3], labels[:3], encoded)
    d = load_dataset(Source("parquet", train=(str(tmp_path / "train" / "*.parquet"),),
                            test=(str(tmp_path / "test.parquet"),)))
    assert d.train.class_names == ("cat", "dog", "eel")
    assert np.array_equal(d.train.images[:, 0], images) and list(d.train.labels) == [0, 1, 2] * 4
    assert len(d.test) == 3


def test_parquet_integer_labels_and_given_class_names(tmp_path):
    parquet_images(tmp_path / "t.parquet", digits_like(10), [0, 1] * 5, label_column="y", image_column="px")
    d = load_dataset(Source("parquet", train=(str(tmp_path / "t.parquet"),), image_column="px", label_column="y",
                            class_names=("no", "yes"), test_ratio=0.2))
    assert d.train.class_names == ("no", "yes") and len(d.test) == 2


@pytest.mark.parametrize("case, fragment", [
    ("float labels", "label column 'label' is double: expected integers or strings"),
    ("missing column", "no column 'label'"),
    ("no match", r"NOWHERE/\*.parquet' matches no file"),
    ("not parquet", "not a readable Parquet file"),
])
def test_broken_parquet_is_one_line(tmp_path, case, fragment):
    path = tmp_path / "t.parquet"
    if case == "float labels":
        parquet_images(path, digits_like(4), [0.5, 1.0, 0.0, 1.0])
    elif case == "missing column":
        parquet_images(path, digits_like(4))
    elif case == "not parquet":
        path.write_bytes(b"not parquet at all")
    pattern = str(tmp_path / "NOWHERE" / "*.parquet") if case == "no match" else str(path)
    with pytest.raises(UserError, match=fragment):
        load_dataset(Source("parquet", train=(pattern,)))


def test_a_parquet_pool_is_read_without_its_label_column(tmp_path):
    """The no-true-label guarantee for Parquet pools: shuffle the labels, and what the pool yields is the same."""
    images = digits_like(20)
    a = parquet_images(tmp_path / "a" / "pool.parquet", images, list(range(20)))
    b = parquet_images(tmp_path / "b" / "pool.parquet", images, [str(i) for i in reversed(range(20))])
    decoded = []
    for path in (a, b):
        src = Source("parquet", unlabeled=str(path))
        listing = list_pool(src)
        ids, x, skipped = decode_part(listing.parts[0], src, (1, 8, 8))
        decoded.append((ids, x))
        assert skipped == 0 and listing.rows == 20
    assert np.array_equal(decoded[0][0], decoded[1][0]) and np.array_equal(decoded[0][1], decoded[1][1])


def test_a_folder_pool_at_any_depth_and_skipping_unreadable(tmp_path):
    root = image_folder(tmp_path, pool=5)
    (root / "unlabeled" / "deeper" / "still").mkdir(parents=True)
    (root / "unlabeled" / "batch-a" / "0.png").rename(root / "unlabeled" / "deeper" / "still" / "x.png")
    (root / "unlabeled" / "batch-a" / "1.png").write_bytes(b"broken")
    (root / "unlabeled" / "readme.txt").write_text("not an image")
    src = Source("image_folder", root, unlabeled=str(root / "unlabeled"))
    with pytest.raises(UserError, match="readme.txt: not an image file"):
        list_pool(src)
    skipping = Source("image_folder", root, unlabeled=str(root / "unlabeled"), skip_unreadable=True)
    listing = list_pool(skipping)
    ids, images, unreadable = decode_part(listing.parts[0], skipping, (1, 8, 8))
    assert listing.rows == 5 and listing.skipped == 1 and unreadable == 1 and len(ids) == 4
    with pytest.raises(UserError, match="1.png: not a readable image"):
        decode_part(list_pool(Source("image_folder", root, unlabeled=str(root / "unlabeled" / "batch-a"))).parts[0],
                    src, (1, 8, 8))


def test_a_pool_inside_train_is_refused(tmp_path):
    root = image_folder(tmp_path)
    with pytest.raises(UserError, match="inside .*train.*keep the pool in a folder of its own"):
        list_pool(Source("image_folder", root, unlabeled=str(root / "train" / "class0")))


def test_a_pool_of_another_size_is_named(tmp_path):
    root = image_folder(tmp_path, pool=2, side=8)
    src = Source("image_folder", root, unlabeled=str(root / "unlabeled"))
    with pytest.raises(UserError, match="pool images are 1×8×8, the labelled images 1×6×6"):
        decode_part(list_pool(src).parts[0], src, (1, 6, 6))
