"""Figs. 6-7's selections: test images both models get right, the mentor alone, the student alone."""

from __future__ import annotations

import numpy as np

from deepmimic.core.galleries import GALLERIES, gather, select

LABELS = np.array([0, 1, 2, 3, 4, 5])
MENTOR = np.array([0, 1, 2, 9, 9, 5])   # wrong on 3, 4
STUDENT = np.array([0, 9, 2, 3, 9, 9])  # wrong on 1, 4, 5


def test_each_gallery_holds_exactly_the_images_of_its_kind():
    assert list(select("both_right", LABELS, MENTOR, STUDENT)) == [0, 2]
    assert list(select("mentor_right_student_wrong", LABELS, MENTOR, STUDENT)) == [1, 5]
    assert list(select("student_right_mentor_wrong", LABELS, MENTOR, STUDENT)) == [3]
    assert len(GALLERIES) == 3  # image 4, wrong for both, belongs to none


def test_a_gallery_draws_at_most_n_of_many_and_the_same_ones_each_time():
    labels = np.zeros(1000, int)
    first = select("both_right", labels, labels, labels, n=25)
    assert len(first) == 25 and len(set(first)) == 25 and list(first) == sorted(first)
    assert list(select("both_right", labels, labels, labels, n=25)) == list(first)
    assert first.max() > 100  # drawn across the test set, not its first 25 images


def test_what_a_trial_keeps_of_its_galleries_is_their_images_and_classes():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1) * 10
    kept = gather(images, LABELS, MENTOR, STUDENT, tuple("abcdef"), "S and M", side=1)  # one image a gallery
    assert kept["mentor_right_student_wrong.found"] == 2 and len(kept["mentor_right_student_wrong.images"]) == 1
    i = int(kept["student_right_mentor_wrong.images"][0, 0, 0, 0]) // 10
    assert i == 3 and kept["student_right_mentor_wrong.mentor"].tolist() == [9]
    assert str(kept["title"]) == "S and M" and list(kept["class_names"]) == list("abcdef")
