"""The pieces every section of an experiment file is made of: strict frozen models, safe names, a trained
model's section. The config (`config.py`) and the mentor kinds (`mentors/`) build on them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .core.architectures import ModelSpec
from .core.training import Training


def _path_safe(name: str) -> str:
    """Names become folder and file names (runs/NAME, students/NAME, MLflow runs): nothing that could leave
    the output folder or confuse a file system."""
    if not 1 <= len(name) <= 100:
        raise ValueError("a name has 1 to 100 characters")
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or name.strip() != name \
            or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"{name!r}: a name becomes a folder name: no '/', '\\', '..', leading dot, "
                         "surrounding spaces or control characters")
    return name


Name = Annotated[str, AfterValidator(_path_safe)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Strict):
    """A trained model: its name, its `ModelSpec` (defaults there) and its `training` settings (`Training`)."""

    name: Name
    architecture: str
    width: int = Field(ModelSpec.width, ge=1)
    width_growth: float = Field(ModelSpec.width_growth, gt=0.0)
    fc_width: int = Field(ModelSpec.fc_width, ge=1)
    dropout: float = Field(ModelSpec.dropout, ge=0.0, lt=1.0)
    seed: int | None = Field(None, ge=0, description="its initialisation and batch order (default: the "
                             "experiment's seed, which also draws the split); ensemble members differ by it")
    training: Training = Training()

    def spec(self) -> ModelSpec:
        return ModelSpec(self.architecture, self.width, self.width_growth, self.fc_width, self.dropout)


def refuse_smoothing(where: str, training: Training) -> None:
    """A student's `training` may not smooth labels: its targets are the mentor's soft labels (one-hot rows for
    `hard` and `supervised`), which the loss takes as they are."""
    if training.label_smoothing:
        raise ValueError(f"{where}.label_smoothing: a student's targets are the mentor's soft labels (one-hot rows "
                         "for `hard` and `supervised`), never smoothed: set it in mentor.training")
