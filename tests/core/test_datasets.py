"""Each reader on tiny files written here in the data set's exact published format."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from deepmimic.core.datasets import load_dataset
from deepmimic.core.datasets.digits import EMBEDDED, reference_digits
from deepmimic.errors import UserError

from ..conftest import cifar_batch, idx_bytes, imported_by_fresh_python, python2_pickle

RNG = np.random.default_rng(0)


def write_idx_set(folder: Path, gz: bool, n_train=6, n_test=4) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_digits_is_embedded():
    d = load_dataset("digits")
    assert d.train.images.shape == (1347, 1, 8, 8) and len(d.test) == 450
    assert d.train.images.dtype == np.uint8 and d.train.images.max() == 255
    assert set(d.test.labels.tolist()) == set(range(10))


def test_the_embedded_digits_are_scikit_learns_with_our_test_quarter():
    reference = reference_digits()
    with np.load(EMBEDDED) as saved:
        assert sorted(saved.files) == sorted(reference)
        for name, array in reference.items():
            assert saved[name].dtype == array.dtype and np.array_equal(saved[name], array), name


def test_loading_digits_imports_no_scikit_learn():
    code = "from deepmimic.core.datasets import load_dataset; load_dataset('digits')"
    assert imported_by_fresh_python(code, "sklearn") == []


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_torchvision_layout(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "MNIST" / "raw", gz)
    d = load_dataset("mnist", tmp_path)
    assert d.train.images.shape == (6, 1, 28, 28)
    assert np.array_equal(d.train.images[:, 0], arrays["train-images-idx3-ubyte"])
    assert d.test.labels.tolist() == [0, 1, 2, 3]


def test_fashion_mnist_debian_layout(tmp_path):
    write_idx_set(tmp_path, gz=True)
    d = load_dataset("fashion_mnist", tmp_path)
    assert d.train.class_names[0] == "T-shirt/top" and len(d.test) == 4


def test_fashion_mnist_torchvision_layout(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=False)
    assert len(load_dataset("fashion_mnist", tmp_path).train) == 6


def test_missing_idx_file_names_file_and_layout(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]; expected IDX files"):
        load_dataset("mnist", tmp_path)


def test_truncated_idx_file_is_reported(tmp_path):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: IDX header says \(6, 28, 28\)"):
        load_dataset("mnist", tmp_path)


def test_bad_magic_is_reported(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(UserError, match="bad magic number"):
        load_dataset("mnist", tmp_path)


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": cifar_batch(3, "labels", 10) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(4, "labels", 10)
    for name, batch in batches.items():
        (folder / name).write_bytes(python2_pickle(batch))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(python2_pickle({b"label_names": names, b"num_vis": 3072}))
    d = load_dataset("cifar10", tmp_path)
    assert d.train.images.shape == (15, 3, 32, 32) and d.test.images.shape == (4, 3, 32, 32)
    # channel-major rows: the first 1024 bytes are the red plane
    assert np.array_equal(d.test.images[0, 0].ravel(), batches["test_batch"][b"data"][0, :1024])
    assert d.train.class_names[9] == "truck"


def test_cifar100_python_files(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(python2_pickle(cifar_batch(5, "fine_labels", 100)))
    (folder / "test").write_bytes(python2_pickle(cifar_batch(2, "fine_labels", 100)))
    fine = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(python2_pickle({b"fine_label_names": fine, b"coarse_label_names": []}))
    d = load_dataset("cifar100", folder)  # the folder itself works as root too
    assert len(d.train.class_names) == 100 and d.train.labels.tolist() == [0, 1, 2, 3, 4]


class Evil:
    def __reduce__(self):  # os.system: print would do, but Ray replaces builtins.print in a process it runs in
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": Evil()}))
    with pytest.raises(UserError, match="batches.meta: corrupt CIFAR pickle .*refusing to load posix.system"):
        load_dataset("cifar10", tmp_path)


def test_cifar_missing_batch_names_layout(tmp_path):
    expected = r"missing .*cifar-10-batches-py/batches.meta; expected ROOT/cifar-10-batches-py"
    with pytest.raises(UserError, match=expected):
        load_dataset("cifar10", tmp_path)


def test_tiny_imagenet_folders(tmp_path):
    from PIL import Image

    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n")
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(2):
            pixels = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8), "L").save(root / "val" / "images" / "val_0.JPEG")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn01629819\t0\t0\t63\t63\n")
    d = load_dataset("tiny_imagenet", tmp_path)
    assert d.train.images.shape == (4, 3, 64, 64) and d.train.labels.tolist() == [0, 0, 1, 1]
    assert d.test.images.shape == (1, 3, 64, 64) and d.test.labels.tolist() == [1]  # grey image → RGB
    assert d.train.class_names == ("goldfish", "European fire salamander")


def test_tiny_imagenet_bad_annotation_line(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    (root / "val").mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\n")
    (root / "train" / "n01" / "images").mkdir(parents=True)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\n")
    with pytest.raises(UserError, match=r"val_annotations.txt:1: expected"):
        load_dataset("tiny_imagenet", tmp_path)


def test_unknown_dataset_and_missing_root():
    with pytest.raises(UserError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="needs dataset.root"):
        load_dataset("cifar10")
