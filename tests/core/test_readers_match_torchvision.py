"""Our readers of MNIST, Fashion-MNIST and CIFAR-10/100 give the arrays torchvision's dataset classes give on the
same files in the published layouts. Ours are kept: they unpickle CIFAR's batches refusing anything but arrays and
lists (torchvision's `pickle.load` runs whatever a hostile file holds), read Debian's gzip layout, answer a bad file
in one line, and cost no torchvision import. torchvision checks each file's MD5 against the published data set's:
these small files are not those, so that check is passed over here."""


import numpy as np
import pytest

from deepmimic.core.datasets import load_dataset

from ..conftest import cifar_batch, python2_pickle
from .test_datasets import write_idx_set

datasets = pytest.importorskip("torchvision.datasets")


@pytest.mark.parametrize("name,ours,folder", [("MNIST", "mnist", "MNIST"),
                                              ("FashionMNIST", "fashion_mnist", "FashionMNIST")])
def test_idx_sets_match(tmp_path, name, ours, folder):
    write_idx_set(tmp_path / folder / "raw", gz=False, n_train=7, n_test=5)
    d = load_dataset(ours, tmp_path)
    for train, split in ((True, d.train), (False, d.test)):
        theirs = getattr(datasets, name)(str(tmp_path), train=train, download=False)
        assert np.array_equal(split.images[:, 0], theirs.data.numpy())
        assert np.array_equal(split.labels, theirs.targets.numpy())
    if ours == "fashion_mnist":  # torchvision names MNIST's classes "0 - zero", …; we name them "0", …
        assert list(d.train.class_names) == theirs.classes


def write_cifar10(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(python2_pickle(cifar_batch(3, "labels", 10, seed=i)))
    (folder / "test_batch").write_bytes(python2_pickle(cifar_batch(4, "labels", 10, seed=9)))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(python2_pickle({b"label_names": names, b"num_vis": 3072}))


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(python2_pickle(cifar_batch(5, "fine_labels", 100, seed=1)))
    (folder / "test").write_bytes(python2_pickle(cifar_batch(3, "fine_labels", 100, seed=2)))
    fine = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(python2_pickle({b"fine_label_names": fine, b"coarse_label_names": []}))


@pytest.mark.parametrize("name,ours,write", [("CIFAR10", "cifar10", write_cifar10),
                                             ("CIFAR100", "cifar100", write_cifar100)])
def test_cifar_sets_match(tmp_path, monkeypatch, name, ours, write):
    write(tmp_path)
    kind = getattr(datasets, name)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *_: True)  # the published MD5s
    d = load_dataset(ours, tmp_path)
    for train, split in ((True, d.train), (False, d.test)):
        theirs = kind(str(tmp_path), train=train, download=False)
        assert np.array_equal(split.images.transpose(0, 2, 3, 1), theirs.data)  # theirs: N×H×W×C
        assert split.labels.tolist() == theirs.targets
    assert list(d.train.class_names) == theirs.classes
