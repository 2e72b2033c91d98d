"""`smaller_first`: a searched student stops where a no-bigger one beat it at a rung, or once it is no smaller
than a student that kept the target in full; the rest go on."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from deepmimic.distributed.pruning import SmallerFirst

STOP, GO = TrialScheduler.STOP, TrialScheduler.CONTINUE


def scheduler() -> SmallerFirst:
    return SmallerFirst("validation_accuracy", "params", max_t=27, grace=1, reduction=3, target=0.9)


def report(s: SmallerFirst, trial: str, epoch: int, params: int, score: float) -> str:
    return s.on_trial_result(None, SimpleNamespace(trial_id=trial), {"epoch": epoch, "params": params,
                                                                     "validation_accuracy": score})


def test_rungs_grow_by_the_reduction_factor_below_the_last_epoch():
    assert scheduler().rungs == [1, 3, 9]


def test_a_bigger_student_beaten_by_a_smaller_one_stops_but_a_small_slow_one_goes_on():
    s = scheduler()
    assert report(s, "big", 1, 50_000, 0.80) == GO         # the first at its rung: nothing to compare with
    assert report(s, "small", 1, 1_000, 0.50) == GO        # worse than `big`, but smaller
    assert report(s, "bigger", 1, 90_000, 0.70) == STOP    # bigger than `big`, and worse
    assert report(s, "mid", 1, 20_000, 0.60) == GO         # beaten by `big` only, which is bigger
    assert report(s, "small", 2, 1_000, 0.55) == GO        # between rungs nothing is decided


def test_nothing_no_smaller_than_an_answer_trains_on():
    s = scheduler()
    s.on_trial_complete(None, SimpleNamespace(trial_id="a"), {"epoch": 27, "params": 5_000,
                                                              "validation_accuracy": 0.95})
    assert report(s, "same", 1, 5_000, 0.99) == STOP
    assert report(s, "smaller", 1, 4_000, 0.10) == GO
    s.on_trial_complete(None, SimpleNamespace(trial_id="b"), {"epoch": 27, "params": 3_000,
                                                              "validation_accuracy": 0.85})  # below the target
    assert s.answer == 5_000
