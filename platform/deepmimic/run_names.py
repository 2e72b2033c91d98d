"""How a sweep's runs are named and described in MLflow: readable names made of the grid values that
tell them apart, the grid axes as tags, and every resolved setting of a model as flat params.

Pure functions of the validated config: the sweep computes them once in its driver and the tracker
only writes them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the sweep's tracker imports this module, and needs PyTorch (which config imports) only for models
    from .config import ExperimentConfig
    from .schema import ModelConfig

# Axis paths that read better as one word in a run's name; any other axis shows its last path component.
AXIS_WORDS = {"split.mentor_ratio": "split", "variant.removal_bound": "removal", "variant.ood_ratio": "ood"}
SEP = " · "


@dataclass(frozen=True)
class RunLabel:
    """What a model's MLflow run is called and carries, by the key the tracker finds it by."""

    key: str                          # `mentor:KEY` or `student:KEY` (the cache's and the trial's keys)
    role: str                         # mentor or student
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def axis_word(axis: str) -> str:
    return AXIS_WORDS.get(axis, axis.rsplit(".", 1)[-1])


def value_text(value: Any) -> str:
    """A grid value as a name shows it: a model by its name, a number without trailing zeros."""
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def varying(points: list[dict[str, Any]]) -> list[str]:
    """The grid axes whose values differ between points, in the grid's order (`student` aside: it names runs)."""
    axes = [a for a in (points[0] if points else {}) if a != "student"]
    return [a for a in axes if len({value_text(p.get(a)) for p in points}) > 1]


def name(model: str, values: dict[str, Any], axes: list[str]) -> str:
    """`Student-A · split 0.2 · seed 0`: the model's name and the values of `axes` at this point."""
    return SEP.join([model] + [f"{axis_word(a)} {value_text(values[a])}" for a in axes if a in values])


def shared(points: list[dict[str, Any]], axes: list[str]) -> dict[str, Any]:
    """The values of `axes` that every point agrees on (a mentor serves points that differ only in what
    concerns its students)."""
    return {a: points[0][a] for a in axes
            if a in points[0] and all(value_text(p.get(a)) == value_text(points[0][a]) for p in points)}


def unique(names: dict[str, str]) -> dict[str, str]:
    """Names made unique within a sweep: a repeated one gets `· #1`, `· #2`, ... in key order."""
    counts, seen = Counter(names.values()), Counter()
    out = {}
    for key, text in names.items():
        if counts[text] > 1:
            seen[text] += 1
            text = f"{text}{SEP}#{seen[text]}"
        out[key] = text
    return out


def flat(prefix: str, value: Any) -> dict[str, Any]:
    """`{"training": {"lr": 0.05}}` → `{"training.lr": 0.05}`; empty and unset values left out."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= flat(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    if value is None or value == () or value == [] or value == {}:
        return {}
    return {prefix: ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value}


def model_params(cfg: ExperimentConfig, model: ModelConfig | None, role: str) -> dict[str, Any]:
    """Every resolved setting that made this model: its architecture and training, the data it saw (data set,
    split or separate pool, variant), the method (students), its seed and its resources."""
    params = flat("dataset", cfg.dataset.model_dump(exclude_defaults=True)) | {"dataset.name": cfg.dataset.name}
    if cfg.pool_separate:
        params["pool"] = cfg.dataset.unlabeled
    else:
        params["split.mentor_ratio"] = cfg.split.mentor_ratio
    resources = cfg.resources.of(role).model_dump(exclude={"mentor"})  # what this model trained with
    params |= flat("variant", cfg.variant.model_dump()) | flat("resources", resources)
    if model is not None:
        params |= flat("", model.model_dump(exclude={"name", "seed"}))
        params |= {"seed": cfg.seed if model.seed is None else model.seed,
                   "training.bf16": "auto" if model.training.bf16 is None else model.training.bf16,  # native or not
                   "training.eval_every": model.training.evaluation_every}
    else:
        params["seed"] = cfg.seed
    if role == "student":
        params |= {"method": cfg.method.name} | flat("method", cfg.method.knobs())
    return params
