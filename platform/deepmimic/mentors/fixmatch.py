"""A semi-supervised mentor: FixMatch (`core/fixmatch.py`), which learns from the labelled images and the pool's
together; its students distil from it as from any mentor, from the pool's images and its soft labels alone."""

from __future__ import annotations

from typing import Any

from ..core.fixmatch import FixMatch
from .base import Made, MentorJob
from .trained import TrainedMentor


class FixMatchMentor(TrainedMentor):
    """A network trained by FixMatch: `fixmatch: {threshold: 0.95, mu: 7, weight: 1, steps: …, strong: …}`."""

    marker = "fixmatch"
    no_separate_pool = ("a FixMatch mentor learns from the paper's split of one labelled set: a separate pool "
                        "(dataset.unlabeled) is not supported for it yet")
    fixmatch: FixMatch

    def params(self) -> dict[str, Any]:
        return {f"fixmatch.{k}": v for k, v in self.fixmatch.__dict__.items() if k != "strong"} | {
            "fixmatch.strong": self.fixmatch.strong.policy}

    def make(self, job: MentorJob) -> Made:
        return self.answered(job, job.train(self, fixmatch=self.fixmatch))
