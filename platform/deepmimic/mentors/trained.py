"""A mentor trained here, on the labelled images' true classes (the paper's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.answers import ModelAnswers
from ..core.results import MentorResult
from ..schema import ModelConfig
from .base import Made, Mentor, MentorJob, PoolJob

if TYPE_CHECKING:
    from ..distributed.train import Trained


class TrainedMentor(ModelConfig, Mentor):
    """A network in the paper's notation with its own `training:` recipe (label smoothing allowed)."""

    @classmethod
    def inherit(cls, raw: dict[str, Any], merged: Any) -> dict[str, Any]:
        return merged(raw)

    def models(self) -> list[tuple[str, ModelConfig]]:
        return [("", self)]

    def make(self, job: MentorJob) -> Made:
        return self.answered(job, job.train(self))

    def answered(self, job: MentorJob, trained: Trained) -> Made:
        """The network `trained` for it, answering the pool and the test set: the mentor made."""
        job.answer(ModelAnswers(trained.uri))
        result = MentorResult.of(trained.summary, name=self.name, architecture=self.architecture,
                                 checkpoint=trained.uri, sees_pool_labels=self.sees_pool_labels)
        return Made(result, trained.test_predictions)

    def label_pool(self, job: PoolJob) -> None:
        job.label(ModelAnswers(job.outcome.result.checkpoint))
