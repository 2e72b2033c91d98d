"""A mentor known only by the probabilities it answers (see `core/black_box.py`), asked about every pool image,
or, within a query budget, about the pool images a selector network chooses in rounds (`core/query_selection.py`).

Every answer is kept by image content where the cache lies (`core/answer_cache.py`), under the mentor's identity
(its kind, location, output and `version`): an image is paid for once, whichever budget, strategy or rerun asks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..core.answer_cache import CachedAnswers
from ..core.black_box import BlackBox, open_black_box
from ..core.query_selection import STRATEGIES
from ..schema import ModelConfig, Strict
from .base import Made, Mentor, MentorJob, PoolJob

BUDGET_KEYS = ("budget", "rounds", "selection", "seed_fraction", "selector")
_OPENING = ("kind", "location", "batch_size", "outputs", "timeout_s", "retries", "max_requests_per_s")


class BlackBoxConfig(Strict):
    """Where a black-box mentor answers, how to ask it, and, with a budget, how many pool images to ask about."""

    kind: Literal["torchscript", "onnx", "http"]
    location: str = Field(min_length=1, description="the model file, or the endpoint's URL")
    outputs: Literal["probabilities", "logits"] = "probabilities"
    batch_size: int = Field(256, ge=1, description="images per query")
    timeout_s: float = Field(30.0, gt=0.0)
    retries: int = Field(3, ge=0)
    max_requests_per_s: float | None = Field(None, gt=0.0)
    version: str | None = Field(None, min_length=1, description="beside the location, what its cached answers are "
                                "kept under: change it when the model behind the endpoint changes")
    budget: int | float | None = Field(None, description="pool images to ask about: a number, or a fraction of "
                                       "the pool (1.0: all of it); none: every pool image, no selection")
    rounds: int = Field(5, ge=1, le=100, description="rounds the budget is spent in, the first chosen at random")
    selection: Literal[tuple(STRATEGIES)] = "random"  # type: ignore[valid-type]
    seed_fraction: float = Field(0.1, gt=0.0, le=1.0, description="the first (random) round's share of the budget")
    selector: ModelConfig | None = Field(None, description="the network that chooses (default: the first student)")

    @model_validator(mode="after")
    def _location_fits_kind(self) -> "BlackBoxConfig":
        is_url = self.location.startswith(("http://", "https://"))
        if (self.kind == "http") != is_url:
            raise ValueError(f"location {self.location!r}: " + ("expected an http(s):// URL" if self.kind == "http"
                                                                  else f"expected a {self.kind} file path"))
        return self

    @field_validator("budget", mode="before")
    @classmethod
    def _a_number(cls, budget: Any) -> Any:
        if isinstance(budget, bool) or not isinstance(budget, (int, float, type(None))):
            raise ValueError(f"budget {budget!r}: a number of images (≥ 1) or a fraction of the pool (0 < f ≤ 1.0)")
        return budget

    @model_validator(mode="after")
    def _budget_fits(self) -> "BlackBoxConfig":
        b = self.budget
        if b is None:
            # Set away from its default (a dump of a section, which writes the defaults, validates again)
            given = [k for k in BUDGET_KEYS[1:] if getattr(self, k) != type(self).model_fields[k].default]
            if given:
                raise ValueError(f"{given[0]}: chooses pool images within a budget: set budget (images, or a "
                                 "fraction of the pool)")
        elif (isinstance(b, float) and not 0.0 < b <= 1.0) or (isinstance(b, int) and b < 1):
            raise ValueError(f"budget {b!r}: a number of images (≥ 1) or a fraction of the pool (0 < f ≤ 1.0)")
        return self

    @property
    def whole_pool(self) -> bool:
        """Every pool image asked: no budget, or all of the pool."""
        return self.budget is None or (isinstance(self.budget, float) and self.budget == 1.0)

    def images(self, pool: int) -> int:
        """The budget in images for a pool of `pool` images."""
        if self.whole_pool:
            return pool
        assert self.budget is not None
        return min(pool, round(self.budget * pool) if isinstance(self.budget, float) else self.budget)

    def answers_key(self) -> str:
        """Whose answers these are: its kind, location (a file by its contents), outputs and version."""
        where = self.location
        if self.kind != "http" and os.path.isfile(where):
            with open(where, "rb") as f:
                where = hashlib.file_digest(f, "sha256").hexdigest()
        return hashlib.sha256(repr((self.kind, where, self.outputs, self.version)).encode()).hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """Its settings, those of a budget only where one chooses images (every way of asking all is one)."""
        dump = self.model_dump(exclude={*BUDGET_KEYS, "version"})
        if self.version is not None:
            dump["version"] = self.version
        if not self.whole_pool:
            assert self.selector is not None  # the experiment gives the first student (`config.py`)
            dump |= {k: getattr(self, k) for k in BUDGET_KEYS[:-1]} | {"selector": self.selector.identity()}
        return dump

    def open(self, device: torch.device) -> BlackBox:
        """A client of its own (each process that asks opens one, with its own rate limit and query counts)."""
        return open_black_box(**self.model_dump(include=set(_OPENING)))


class BlackBoxMentor(Mentor):
    """Nothing to train, its architecture unknown: asked about every test image, and every pool image or those
    its budget pays for."""

    marker = "black_box"
    no_network = "a black box has no network here to run (it answers only what it is asked)"
    black_box: BlackBoxConfig

    @classmethod
    def with_students(cls, raw: dict[str, Any], students: list[Any]) -> dict[str, Any]:
        """A budget's selector, where none is named: the first student (of the whole space, so that a grid's
        student axis keeps one selector, and one budget spent, for every student)."""
        box = raw.get("black_box")
        if isinstance(box, dict) and box.get("budget") is not None and box.get("selector") is None and students \
                and isinstance(students[0], dict):
            return {**raw, "black_box": {**box, "selector": students[0]}}
        return raw

    @classmethod
    def inherit(cls, raw: dict[str, Any], merged: Any) -> dict[str, Any]:
        box = raw.get("black_box")
        if isinstance(box, dict) and isinstance(box.get("selector"), dict):
            return {**raw, "black_box": {**box, "selector": merged(box["selector"])}}
        return raw

    @property
    def budgeted(self) -> bool:
        return not self.black_box.whole_pool

    @property
    def no_separate_pool(self) -> str:  # type: ignore[override]
        return "a query budget chooses from the paper's split of one labelled set: a separate pool " \
               "(dataset.unlabeled) is not supported with it yet" if self.budgeted else ""

    def identity(self) -> Any:
        return {"name": self.name, "black_box": self.black_box.identity()}

    def models(self) -> list[tuple[str, ModelConfig]]:
        selector = self.black_box.selector
        return [("black_box.selector", selector)] if self.budgeted and selector is not None else []

    def black_boxes(self) -> list[BlackBoxConfig]:
        return [self.black_box]

    def params(self) -> dict[str, Any]:
        box = self.black_box.model_dump(exclude={"selector"} | (set(BUDGET_KEYS) if not self.budgeted else set()))
        params = {f"black_box.{k}": v for k, v in box.items()}
        if self.budgeted and self.black_box.selector is not None:
            params["black_box.selector"] = f"{self.black_box.selector.name} ({self.black_box.selector.architecture})"
        return params

    def make(self, job: MentorJob) -> Made:
        answers = CachedAnswers(self.black_box, job.answers(self.black_box.answers_key()))
        if self.budgeted:
            seconds, queries, budget = job.within_budget(answers, self.black_box)
        else:
            (seconds, queries), budget = job.answer(answers), None
        return job.scored(self.name, f"black box ({self.black_box.kind})", seconds[job.test_probabilities], queries,
                          budget)

    def label_pool(self, job: PoolJob) -> None:
        job.label(CachedAnswers(self.black_box, job.answers(self.black_box.answers_key())))
