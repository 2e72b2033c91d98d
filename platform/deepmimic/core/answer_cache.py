"""A black box's answers kept by image content, as they come: a run stopped mid-labelling loses none, and a rerun,
another budget or strategy, or another sweep asking the same mentor never pays for an image twice.

One folder a mentor identity (`CACHE/answers/KEY/`): each batch the black box answers is one sealed Parquet part
(id: the image's 64-bit content hash, soft_label), written atomically with its manifest, so writers never clash
and a part cut off or damaged is left out (its images are asked again) rather than trusted.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs
import torch

from . import artifacts, tables
from .answers import Answerer, Answering
from .black_box import Queries


def image_keys(images: np.ndarray) -> np.ndarray:
    """Each uint8 image's content hash (shape included) as an int64: what the cache finds answers by."""
    shape = repr(images.shape[1:]).encode()
    return np.array([int.from_bytes(hashlib.blake2b(shape + image.tobytes(), digest_size=8).digest(), "little",
                                    signed=True) for image in images], dtype=np.int64)


def read_answers(folder: str, seen: set[str]) -> tuple[dict[int, np.ndarray], int]:
    """The answers of every intact part not in `seen` (their names added to it) by image key, and the number of
    parts left out as damaged or cut off."""
    fs, path = artifacts.filesystem(folder)
    known: dict[int, np.ndarray] = {}
    damaged = 0
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if not info.base_name.endswith(".parquet") or info.base_name in seen:
            continue
        uri = f"{folder}/{info.base_name}"
        try:
            artifacts.verify(uri)
        except artifacts.TornArtifact:
            damaged += 1
            continue
        seen.add(info.base_name)
        part = tables.read(uri)
        known.update(zip(part.column("id").to_numpy().tolist(), tables.decode_soft_labels(part.column("soft_label"))))
    return known, damaged


@dataclass(frozen=True)
class CachedAnswers:
    """An answerer whose answers are looked up in, and added to, the cache folder `folder` first."""

    answerer: Answerer
    folder: str

    def open(self, device: torch.device) -> Answering:
        return _Cached(self.answerer.open(device), self.folder)


class _Cached:
    def __init__(self, inner: Answering, folder: str) -> None:
        self.inner, self.folder = inner, folder
        self.seen: set[str] = set()
        self.known, self.damaged = read_answers(folder, self.seen)
        self.reused = 0
        self.batch = getattr(inner, "batch_size", 256)

    @property
    def queries(self) -> Queries | None:
        asked = self.inner.queries or Queries()
        return Queries(asked.requests, asked.images, asked.retries, cached=self.reused)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        keys = image_keys(images)
        # One asker at a time (mentors made side by side ask about the same test images): each first reads what
        # the others were answered meanwhile, so none pays for an image another has just bought.
        with artifacts.exclusive(f"{self.folder}.lock", "a black box's answers", quiet=True):
            self.known.update(read_answers(self.folder, self.seen)[0])
            missing = [i for i, k in enumerate(keys.tolist()) if k not in self.known]
            for start in range(0, len(missing), self.batch):  # kept a request at a time: a failure loses one
                at = np.asarray(missing[start : start + self.batch])
                answers = self.inner.probabilities(images[at])
                name = f"{uuid.uuid4().hex}.parquet"
                tables.write_table(tables.soft_label_table(keys[at], answers), f"{self.folder}/{name}")
                self.seen.add(name)
                self.known.update(zip(keys[at].tolist(), answers))
        self.reused += len(keys) - len(missing)
        return np.stack([self.known[k] for k in keys.tolist()]).astype(np.float32) if len(keys) else \
            np.zeros((0, 0), np.float32)
