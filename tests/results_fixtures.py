"""Small typed results, made by hand, for the report, plot and tracking tests."""

from __future__ import annotations

from deepmimic.core.results import Counts, Epoch, MentorResult, StudentResult, SweepSummary, TrialRecord


def mentor(accuracy: float = 0.9, checkpoint: str | None = None) -> MentorResult:
    return MentorResult(name="Mentor", architecture="c-mp-fc2", params=1000, test_accuracy=accuracy, test_loss=0.3,
                        inference_time_s=0.02, confusion_matrix=[[9, 1], [1, 9]], checkpoint=checkpoint,
                        history=(Epoch(1, 1.0, 0.8, 0.5), Epoch(2, 0.6, accuracy, 0.3)))


def student(name: str, accuracy: float, mentor_accuracy: float = 0.9, checkpoint: str | None = None) -> StudentResult:
    return StudentResult(name=name, architecture="c-fc", params=100, test_accuracy=accuracy, test_loss=0.4,
                         inference_time_s=0.01, confusion_matrix=[[8, 2], [2, 8]], checkpoint=checkpoint,
                         history=(Epoch(1, 1.1, 0.7, 0.6), Epoch(2, 0.7, accuracy, 0.4)),
                         relative_accuracy=accuracy / mentor_accuracy, agreement=0.95, train_pool=80)


def record(name: str, accuracy: float, seed: int = 0, split_ratio: float = 0.2, mentor_accuracy: float = 0.9,
           grid: dict | None = None) -> TrialRecord:
    return TrialRecord(key=f"{name}-{seed}-{split_ratio}", mentor_key=f"m-{seed}-{split_ratio}",
                       grid={**(grid or {}), "student": name}, seed=seed, split_ratio=split_ratio, removal_bound=0.0,
                       ood_ratio=0.0, mentor=mentor(mentor_accuracy), student=student(name, accuracy, mentor_accuracy))


def summary(records: list[TrialRecord], axes: tuple[str, ...] = ("student",)) -> SweepSummary:
    return SweepSummary(name="tiny", dataset="digits", paper=None, grid_axes=axes,
                        trial_keys=tuple(r.key for r in records), counts=Counts(mentors=1, trials=len(records)),
                        config={})
