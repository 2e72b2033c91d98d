"""DeepMimic (the paper): the mentor's probabilities as they are, under cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Method


@dataclass(frozen=True)
class DeepMimic(Method):
    name = "deepmimic"

    def key(self) -> list[Any] | None:
        return None  # the paper's keys, written before there were methods, stay as they were
