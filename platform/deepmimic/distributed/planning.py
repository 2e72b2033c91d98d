"""A sweep's plan: the distinct mentors its grid needs, its student trials, and how each run is named in MLflow.

Pure functions of the validated config, computed once in the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import SweepConfig
from ..run_names import RunLabel, model_params, name, shared, unique, value_text, varying
from ..schema import ModelConfig
from .keys import mentor_key, student_key, with_mentor


@dataclass(frozen=True)
class Trial:
    key: str
    cfg: SweepConfig
    student: ModelConfig
    grid: dict[str, Any]      # this trial's axis values


@dataclass(frozen=True)
class Plan:
    mentors: dict[str, SweepConfig]   # distinct mentors by key, an ensemble's members first
    trials: dict[str, Trial]          # student trials by key, in grid order
    labels: dict[str, RunLabel]       # every mentor's and trial's MLflow run, by `mentor:KEY` and `student:KEY`


def plan(points: list[tuple[dict[str, Any], SweepConfig]]) -> Plan:
    """Distinct mentors by key (those a mentor needs before it), and student trials by key, in grid order."""
    mentors: dict[str, SweepConfig] = {}
    trials: dict[str, Trial] = {}
    served: dict[str, list[dict[str, Any]]] = {}  # each mentor's grid points (and those of mentors needing it)

    def add(cfg: SweepConfig, values: dict[str, Any]) -> None:
        for needed in cfg.mentor.needs():
            add(with_mentor(cfg, needed), values)
        mentors.setdefault(mentor_key(cfg), cfg)
        served.setdefault(mentor_key(cfg), []).append(values)

    for values, cfg in points:
        add(cfg, values)
        for student in cfg.students:
            key = student_key(cfg, student)
            trials[key] = Trial(key, cfg, student, {**values, "student": student.name})
    return Plan(mentors, trials, _labels(mentors, trials, served, [v for v, _ in points]))


def _labels(mentors: dict[str, SweepConfig], trials: dict[str, Trial], served: dict[str, list[dict[str, Any]]],
            points: list[dict[str, Any]]) -> dict[str, RunLabel]:
    """Each run's MLflow name (its model and the grid values that tell it apart, unique in the sweep), its
    params (every resolved setting, and the grid values) and its tags (the grid values)."""
    axes = varying(points)
    names = {f"mentor:{k}": name(cfg.mentor.name, shared(served[k], [a for a in axes if a != "mentor"]), axes)
             for k, cfg in mentors.items()}
    names |= {f"student:{k}": name(t.student.name, t.grid, axes) for k, t in trials.items()}
    names = unique(names)
    labels = {}
    for k, cfg in mentors.items():
        grid = shared(served[k], list(points[0]) if points else [])
        params = _mentor_params(cfg) | _tags(grid)
        labels[f"mentor:{k}"] = RunLabel(f"mentor:{k}", "mentor", names[f"mentor:{k}"], params, _tags(grid))
    for k, t in trials.items():
        params = model_params(t.cfg, t.student, "student") | {"mentor": t.cfg.mentor.name,
                                                               "mentor_key": mentor_key(t.cfg)} | _tags(t.grid)
        labels[f"student:{k}"] = RunLabel(f"student:{k}", "student", names[f"student:{k}"], params, _tags(t.grid))
    return labels


def _tags(grid: dict[str, Any]) -> dict[str, str]:
    return {axis: value_text(value) for axis, value in grid.items()}


def trial_file(out: str, key: str) -> str:
    return f"{out}/trials/{key}/trial.json"


def _mentor_params(cfg: SweepConfig) -> dict[str, Any]:
    """A mentor run's params: those of the network it is, where it is one, and its kind's own."""
    return model_params(cfg, dict(cfg.mentor.models()).get(""), "mentor") | cfg.mentor.params()
