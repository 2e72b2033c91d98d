"""A mentor known only by the probabilities it answers (see `core/black_box.py`)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from ..core.black_box import BlackBox, open_black_box
from ..schema import Strict
from .base import Made, Mentor, MentorJob, PoolJob


class BlackBoxConfig(Strict):
    """Where a black-box mentor answers, and how to ask it."""

    kind: Literal["torchscript", "onnx", "http"]
    location: str = Field(min_length=1, description="the model file, or the endpoint's URL")
    outputs: Literal["probabilities", "logits"] = "probabilities"
    batch_size: int = Field(256, ge=1, description="images per query")
    timeout_s: float = Field(30.0, gt=0.0)
    retries: int = Field(3, ge=0)
    max_requests_per_s: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _location_fits_kind(self) -> "BlackBoxConfig":
        is_url = self.location.startswith(("http://", "https://"))
        if (self.kind == "http") != is_url:
            raise ValueError(f"location {self.location!r}: " + ("expected an http(s):// URL" if self.kind == "http"
                                                                  else f"expected a {self.kind} file path"))
        return self

    def open(self, device: torch.device) -> BlackBox:
        """A client of its own (each process that asks opens one, with its own rate limit and query counts)."""
        return open_black_box(**self.model_dump())


class BlackBoxMentor(Mentor):
    """Nothing to train, its architecture unknown: it is asked about every pool and test image once."""

    marker = "black_box"
    black_box: BlackBoxConfig

    def black_boxes(self) -> list[BlackBoxConfig]:
        return [self.black_box]

    def params(self) -> dict[str, Any]:
        return {f"black_box.{k}": v for k, v in self.black_box.model_dump().items()}

    def make(self, job: MentorJob) -> Made:
        seconds, queries = job.answer(self.black_box)
        return job.scored(self.name, f"black box ({self.black_box.kind})", seconds[job.test_probabilities], queries)

    def label_pool(self, job: PoolJob) -> None:
        job.label(self.black_box)
