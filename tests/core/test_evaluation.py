"""The paired bootstrap interval of a student's accuracy against its mentor's, on known cases."""

from __future__ import annotations

import numpy as np

from deepmimic.core.evaluation import paired_bootstrap


def test_identical_correctness_gives_a_zero_width_interval_at_zero():
    right = np.random.default_rng(0).random(500) < 0.8
    assert paired_bootstrap(right, right) == (0.0, 0.0)


def test_the_interval_of_a_known_difference_covers_it_with_the_binomial_width():
    """The student is right on 60 more of 1,000 images and never worse: the difference is 0.06 and its
    standard error about sqrt(0.06 · 0.94 / 1000) = 0.0075, so the 95% interval is about 0.06 ± 0.015."""
    mentor = np.zeros(1000, bool)
    mentor[:800] = True
    student = mentor.copy()
    student[800:860] = True
    low, high = paired_bootstrap(mentor, student)
    assert low < 0.06 < high
    assert 0.04 < low < 0.052 and 0.068 < high < 0.08


def test_pairing_makes_the_interval_narrower_than_independent_samples_would():
    """Both models wrong on the same hard images: the difference varies far less than either accuracy."""
    mentor = np.ones(1000, bool)
    mentor[:200] = False
    student = mentor.copy()
    student[200:210] = False
    low, high = paired_bootstrap(mentor, student)
    assert high - low < 0.015 and high <= 0.0
