"""Cache keys: short hashes of what determines a mentor, a student trial, a student set and a separate pool.

A key changes exactly when what it names would be made differently, so a later sweep that needs the same
mentor, set or trial finds it made. Keys written before a setting existed stay as they were: settings at
their old behaviour are left out (a method's, `NOT_LEARNED`'s).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config import ExperimentConfig
from ..mentors import Mentor
from ..schema import ModelConfig

NOT_LEARNED = {"eval_every", "cuda_graph"}  # how often a run is scored, how its steps are launched


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object; `NOT_LEARNED`'s keys left out wherever they stand: they change
    nothing a run learns (a graphed step's rounding differs as a GPU's does from a CPU's, and the device is in
    no key either), so cached mentors and finished trials stay valid across them."""
    def what_is_trained(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: what_is_trained(v) for k, v in node.items() if k not in NOT_LEARNED}
        return [what_is_trained(v) for v in node] if isinstance(node, list) else node

    return hashlib.sha256(json.dumps(what_is_trained(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def mentor_key(cfg: ExperimentConfig) -> str:
    """What determines a mentor and its soft labels: data, split, seed, the mentor itself, out-of-domain source."""
    ood = cfg.ood.model_dump() if cfg.ood else None
    data = cfg.dataset.key() | ({"skip_unreadable": True} if cfg.data.skip_unreadable else {})
    return digest({"dataset": data, "split": cfg.split.model_dump(), "seed": cfg.seed,
                   "mentor": cfg.mentor.identity(), "ood": ood})


def with_mentor(cfg: ExperimentConfig, mentor: Mentor) -> ExperimentConfig:
    """The experiment as if `mentor` (one another needs: an ensemble's member) were its mentor: the same data,
    split and seed."""
    return cfg.model_copy(update={"mentor": mentor})


def _with_method(parts: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """`parts` plus the method's key where it has one (the paper's has none, so its keys stay as they were)."""
    method = cfg.method.key()
    return parts if method is None else {**parts, "method": method}


def student_key(cfg: ExperimentConfig, student: ModelConfig) -> str:
    """A student trial: its mentor, itself, its pool's variant and its method."""
    parts = {"mentor": mentor_key(cfg), "student": student.identity(), "variant": cfg.variant.model_dump()}
    return digest(_with_method(parts, cfg))


def set_key(cfg: ExperimentConfig, soft_labels: Any) -> str:
    """A student set: its variant, the soft labels it carries (their tables' hashes) and its method's targets."""
    return digest(_with_method({"variant": cfg.variant.model_dump(), "labels": soft_labels}, cfg))


def pool_key(cfg: ExperimentConfig) -> str:
    """What determines a separate pool's shards: the files read and how."""
    return digest({"dataset": cfg.dataset.key(), "skip_unreadable": cfg.data.skip_unreadable})
