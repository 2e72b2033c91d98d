"""CIFAR-10 and CIFAR-100 from the python pickle batches.

Layouts: `ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}` and
`ROOT/cifar-100-python/{train,test,meta}`, or ROOT being that folder itself.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from ..images import Dataset, ImageSet

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The batches hold plain dicts of lists, bytes and numpy arrays: nothing else
# may be unpickled, so a hostile file cannot run code.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path, layout: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"missing {path}; expected {layout}")
    try:
        with open(path, "rb") as f:
            raw = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any decoding failure means a corrupt file
        raise UserError(f"{path}: corrupt CIFAR pickle ({type(e).__name__}: {e}); expected {layout}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: not a CIFAR batch (a {type(raw).__name__}, not a dict); expected {layout}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _images(batch: dict[str, Any], path: Path, layout: str) -> np.ndarray:
    data = np.asarray(batch.get("data", ()), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' is {data.shape}, expected N×3072; expected {layout}")
    return data.reshape(-1, 3, 32, 32)


def _folder(root: Path, name: str) -> Path:
    return root if root.name == name else root / name


def _names(values: list[Any]) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10: 50,000 train and 10,000 test 32×32 colour images, 10 classes."""
    folder = _folder(root, CIFAR10_DIR)
    layout = f"ROOT/{CIFAR10_DIR}/data_batch_1..5, test_batch, batches.meta"
    names = _names(_unpickle(folder / "batches.meta", layout)["label_names"])

    def part(files: list[str]) -> ImageSet:
        batches = [(folder / f, _unpickle(folder / f, layout)) for f in files]
        images = np.concatenate([_images(b, p, layout) for p, b in batches])
        labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for _, b in batches])
        return ImageSet(images, labels, names)

    return Dataset("cifar10", part([f"data_batch_{i}" for i in range(1, 6)]), part(["test_batch"]))


def load_cifar100(root: Path) -> Dataset:
    """CIFAR-100 with its 100 fine labels; `coarse` superclasses are not used."""
    folder = _folder(root, CIFAR100_DIR)
    layout = f"ROOT/{CIFAR100_DIR}/train, test, meta"
    names = _names(_unpickle(folder / "meta", layout)["fine_label_names"])

    def part(file: str) -> ImageSet:
        batch = _unpickle(folder / file, layout)
        return ImageSet(_images(batch, folder / file, layout), np.asarray(batch["fine_labels"], dtype=np.int64), names)

    return Dataset("cifar100", part("train"), part("test"))
