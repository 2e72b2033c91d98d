"""The paper's Figs. 6-7: test images by who classifies them right, the mentor, the student, or both.

A registry of selections: a new gallery is one function of (labels, mentor's and student's predictions)
to a mask, plus one line.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Selection = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

GALLERIES: dict[str, tuple[str, Selection]] = {
    "both_right": ("mentor and student right", lambda y, m, s: (m == y) & (s == y)),
    "mentor_right_student_wrong": ("mentor right, student wrong", lambda y, m, s: (m == y) & (s != y)),
    "student_right_mentor_wrong": ("student right, mentor wrong", lambda y, m, s: (m != y) & (s == y)),
}


def select(kind: str, labels: np.ndarray, mentor: np.ndarray, student: np.ndarray, n: int = 25,
           seed: int = 0) -> np.ndarray:
    """Up to `n` test indices of a gallery, drawn at random (by `seed`) among the images that qualify,
    in ascending order."""
    found = np.flatnonzero(GALLERIES[kind][1](labels, mentor, student))
    chosen = np.random.default_rng(seed).permutation(found)[:n]
    return np.sort(chosen)


def gather(images: np.ndarray, labels: np.ndarray, mentor: np.ndarray, student: np.ndarray,
           class_names: tuple[str, ...], title: str, side: int = 5) -> dict[str, np.ndarray]:
    """What the galleries show, without drawing them (a trial keeps this; a figure is drawn where someone looks):
    for each gallery, up to `side`² chosen test images with their true, mentor's and student's classes, and how
    many test images qualified; the class names, the title."""
    data = {"class_names": np.asarray(class_names), "title": np.asarray(title), "side": np.asarray(side)}
    for kind, (_, qualifies) in GALLERIES.items():
        chosen = select(kind, labels, mentor, student, side * side)
        data |= {f"{kind}.images": images[chosen], f"{kind}.labels": labels[chosen],
                 f"{kind}.mentor": mentor[chosen], f"{kind}.student": student[chosen],
                 f"{kind}.found": np.asarray(int(qualifies(labels, mentor, student).sum()))}
    return data
