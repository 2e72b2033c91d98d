"""The pieces every section of an experiment file is made of: strict frozen models, safe names, a trained
model's section. The config (`config.py`) and the mentor kinds (`mentors/`) build on them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .core import library_models
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


# Settings added after cache keys existed: at their defaults they stay out of a model's identity, so the keys of
# models that do not use them are those of the versions before them.
LATER_FIELDS = {"stem": "auto", "weights": None}
LATER_TRAINING = {"augment": None, "backbone_lr_scale": 1.0, "freeze_epochs": 0}


class ModelConfig(Strict):
    """A trained model: its name, its `ModelSpec` (defaults there) and its `training` settings (`Training`)."""

    name: Name
    architecture: str = Field(description="the paper's notation (`c-mp-fc2`), or a library's classifier by name: "
                              "`torchvision/resnet18`, `timm/…`")
    # Bounded far above any network these notations describe well, so a typo's 10**30 is refused here, not by
    # PyTorch's integer overflow while the network is checked.
    width: int = Field(ModelSpec.width, ge=1, le=2**16)
    width_growth: float = Field(ModelSpec.width_growth, gt=0.0, le=16.0)
    fc_width: int = Field(ModelSpec.fc_width, ge=1, le=2**20)
    dropout: float = Field(ModelSpec.dropout, ge=0.0, lt=1.0)
    stem: Literal["auto", "small", "standard"] = Field(
        "auto", description="a library network's first layers: small (a stride-1 start, no initial pooling) keeps "
        "small images' resolution; auto: small up to 64 pixels a side")
    weights: str | None = Field(None, min_length=1, description="a library network's start: a weights name "
                                "(`IMAGENET1K_V1`, downloaded) or a local file (a state dict or a checkpoint)")
    seed: int | None = Field(None, ge=0, description="its initialisation and batch order (default: the "
                             "experiment's seed, which also draws the split); ensemble members differ by it")
    training: Training = Training()

    @model_validator(mode="after")
    def _library_settings(self) -> "ModelConfig":
        if not library_models.is_library(self.architecture):
            for key, default in LATER_FIELDS.items():
                if getattr(self, key) != default:
                    raise ValueError(f"{key}: only a library network (torchvision/<name>, timm/<name>) takes it")
        return self

    def spec(self) -> ModelSpec:
        return ModelSpec(self.architecture, self.width, self.width_growth, self.fc_width, self.dropout, self.stem)

    @field_validator("weights")
    @classmethod
    def _absolute(cls, weights: str | None) -> str | None:
        return library_models.local_path(weights) if weights else weights

    def identity(self) -> dict[str, Any]:
        """What of it determines its cache keys: every field but those added later, while at their defaults; a
        weights file by its contents."""
        dump = {k: v for k, v in self.model_dump().items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
        if self.weights:
            dump["weights"] = library_models.fingerprint(self.weights)
        return dump | {"training": training_identity(dump["training"])}


def training_identity(dump: dict[str, Any]) -> dict[str, Any]:
    """A `training:` section's dump less the settings added later, while at their defaults."""
    return {k: v for k, v in dump.items() if k not in LATER_TRAINING or v != LATER_TRAINING[k]}


def refuse_smoothing(where: str, training: Training) -> None:
    """A student's `training` may not smooth labels: its targets are the mentor's soft labels (one-hot rows for
    `hard` and `supervised`), which the loss takes as they are."""
    if training.label_smoothing:
        raise ValueError(f"{where}.label_smoothing: a student's targets are the mentor's soft labels (one-hot rows "
                         "for `hard` and `supervised`), never smoothed: set it in mentor.training")
