"""A mentor's folder in the cache (`CACHE/mentors/KEY/`): every file it holds, each name spelled here once."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class MentorFolder:
    path: str

    @classmethod
    def at(cls, cache: str, key: str) -> MentorFolder:
        return cls(f"{cache}/mentors/{key}")

    def sibling(self, key: str) -> MentorFolder:
        """Another mentor's folder in the same cache (an ensemble's members live beside it)."""
        return MentorFolder(f"{os.path.dirname(self.path)}/{key}")

    @property
    def cache(self) -> str:
        return os.path.dirname(os.path.dirname(self.path))

    @property
    def done(self) -> str:
        """`mentor.json`, written last: the finished mentor stage."""
        return f"{self.path}/mentor.json"

    def answers(self, key: str) -> str:
        """The answer cache of the black box whose answers are `key`'s (`core/answer_cache.py`): one for the
        whole cache, shared by every mentor asking it."""
        return f"{self.cache}/answers/{key}"

    @property
    def rebuilds(self) -> str:
        """Records of its cached artifacts found damaged and made again, `MS.json` each (ms since the epoch): one
        file an event, so that a sweep counts those of its own time (`trials.run_stages`), on any storage."""
        return f"{self.path}/rebuilt"

    def record_rebuild(self, artifact: str) -> None:
        """Record that `artifact` (one of its own, or a student set's beside it) was found damaged, made again."""
        from ..core import artifacts  # written in the processes that rebuild; the folder's names need none

        artifacts.write_json({"rebuilt": artifact}, f"{self.rebuilds}/{time.time_ns() // 1_000_000}.json")

    @property
    def lock(self) -> str:
        """Held while the mentor is made, so sweeps sharing the cache make it once."""
        return f"{self.path}.lock"

    @property
    def runs(self) -> str:
        """Ray's storage for the mentor's training run."""
        return f"{self.path}/ray"

    @property
    def data(self) -> str:
        return f"{self.path}/data"

    @property
    def mentor_table(self) -> str:
        """The labelled images it learns from: id, image, label."""
        return f"{self.data}/mentor.parquet"

    @property
    def pool_table(self) -> str:
        """The paper's student pool: id, image, no label."""
        return f"{self.data}/student.parquet"

    @property
    def test_table(self) -> str:
        return f"{self.data}/test.parquet"

    @property
    def ood_table(self) -> str:
        return f"{self.data}/ood.parquet"

    @property
    def pool_labels(self) -> str:
        """The pool's true labels: read only to build Table 3's variants (and the supervised reference's
        targets), never by a student of another method."""
        return f"{self.data}/pool_labels.parquet"

    @property
    def soft_labels(self) -> str:
        """Its answers for the paper's pool and the out-of-domain candidates."""
        return f"{self.path}/soft_labels.parquet"

    @property
    def test_probabilities(self) -> str:
        return f"{self.path}/test_probabilities.parquet"

    @property
    def pool_soft_labels(self) -> str:
        """Its answers for a separate pool (Ray Data's shards)."""
        return f"{self.path}/pool_soft_labels"

    def student_set(self, key: str) -> str:
        return f"{self.path}/student_sets/{key}"

    @property
    def search_slices(self) -> str:
        return f"{self.path}/search_slices"
