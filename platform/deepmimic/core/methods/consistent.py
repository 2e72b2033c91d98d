"""Consistent teaching (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and
consistent"): the mentor answers every augmented view the student sees, in the student's own step, instead of
once for the unaugmented pool image. A shifted or mirrored image is no longer taught the original's answer, and
each epoch's new views are new targets: the student matches the mentor's function, not a fixed table of it.

It needs the mentor's network in the student's process, so only a mentor that has one (a trained kind, not a
black box or an ensemble) can teach this way; the student still sees no true label, only the mentor's answers."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method


@dataclass(frozen=True)
class Consistent(Method):
    name = "consistent"
    teacher_online = True
