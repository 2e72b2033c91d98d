"""Networks from the paper's notation, e.g. `c2-mp-c2-mp-c2-mp-fc2` or `(c-bn-d)9-fc-bn-d`.

Tokens: `c` 3×3 convolution + ReLU, `mp` 2×2 max pooling, `fc` fully connected,
`bn` batch norm, `d` dropout, `s` softmax (accepted at the end and implied:
models return logits); ours, beyond the paper: `gap` global average pooling and
`r` a residual block (ResNet's basic block: two 3×3 convolutions with batch
norm around an identity shortcut, a 1×1 projection where the width changes),
so `c-bn-r2-mp-r2-mp-r2-mp-r2-gap-fc` with width 64 is a ResNet-18-like
network and `(c-bn)2-mp-(c-bn)2-mp-(c-bn)3-mp-fc2` a VGG-style stack. `θn` repeats a token n
times and `(…)n` a group. Convolution widths start at `width` and grow by
`width_growth` after each pooling; hidden `fc` layers have `fc_width` units.
The last `fc` is the classifier when only `s` follows it; otherwise (`…-fc-bn-d`)
a classifier is appended, so every network ends in `num_classes` logits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import library_models

TOKENS = ("c", "r", "mp", "fc", "bn", "d", "gap", "s")
MAX_LAYER_WEIGHTS = 2**40  # a layer of 4 TiB in float32
_TOKEN = re.compile(r"(c|r|mp|fc|bn|d|gap|s)(\d*)$")


class ArchitectureError(UserError):
    """An architecture string that does not parse or does not fit the input."""


@dataclass(frozen=True)
class Layer:
    kind: str
    token_pos: int  # 1-based position of the token it came from, for error messages


def _bad(arch: str, msg: str) -> ArchitectureError:
    return ArchitectureError(f"architecture {arch!r}: {msg}")


def _split_top(arch: str, text: str) -> list[str]:
    """Split on '-' outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            raise _bad(arch, "')' without '('")
        if ch == "-" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise _bad(arch, "'(' without ')'")
    return parts + [cur]


def parse(arch: str) -> list[Layer]:
    """Expand an architecture string into its flat list of layers."""
    counter = [0]

    def expand(text: str) -> list[Layer]:
        layers: list[Layer] = []
        for part in _split_top(arch, text):
            counter[0] += 1
            pos = counter[0]
            group = re.fullmatch(r"\((.*)\)(\d*)", part)
            if group:
                if not group.group(1):
                    raise _bad(arch, f"empty group at token {pos}")
                inner, times = expand(group.group(1)), group.group(2)
            else:
                m = _TOKEN.match(part)
                if not m:
                    shown = part or "(empty)"
                    raise _bad(arch, f"unknown token {shown!r} at token {pos}; known: {', '.join(TOKENS)}, θn, (…)n")
                inner, times = [Layer(m.group(1), pos)], m.group(2)
            if times and int(times) < 1:
                raise _bad(arch, f"repeat count 0 in {part!r} at token {pos}")
            layers += inner * (int(times) if times else 1)
        return layers

    if not arch or not arch.strip():
        raise ArchitectureError("architecture is empty")
    layers = expand(arch.strip())
    for i, layer in enumerate(layers):
        if layer.kind == "s" and any(later.kind != "s" for later in layers[i:]):
            raise _bad(arch, f"softmax 's' (token {layer.token_pos}) may only end the network")
    return [layer for layer in layers if layer.kind != "s"]


class Normalize(nn.Module):
    """uint8-range input → standardized float; part of the model so a saved
    model needs no separate preprocessing recipe."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        # Scaled in NumPy's float32 (the same rounding as PyTorch's): a PyTorch op on the meta device, where
        # `ModelSpec.check` builds, imports torch._dynamo, over a second in every process that checks a config.
        for name, values in (("mean", mean), ("std", std)):
            scaled = np.asarray(values, dtype=np.float32).reshape(1, -1, 1, 1) * np.float32(255.0)
            self.register_buffer(name, torch.tensor(scaled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of uint8 N×C×H×W images (no labels needed)."""
    x = images.astype(np.float32) / 255.0
    std = x.std(axis=(0, 2, 3))
    return x.mean(axis=(0, 2, 3)).tolist(), np.maximum(std, 1e-3).tolist()


class ResidualBlock(nn.Module):
    """ResNet's basic block, stride 1 (downsampling is the notation's `mp`)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU(inplace=True),
            nn.Conv2d(n_out, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out),
        )
        self.shortcut = nn.Identity() if n_in == n_out else nn.Sequential(
            nn.Conv2d(n_in, n_out, 1, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    width: int = 32,
    width_growth: float = 2.0,
    fc_width: int = 128,
    dropout: float = 0.25,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> nn.Sequential:
    """Build the network `arch` for C×H×W inputs, returning `num_classes` logits."""
    layers = parse(arch)
    channels, h, w = input_shape
    mods: list[nn.Module] = [Normalize(mean or [0.5] * channels, std or [0.25] * channels)]
    flat: int | None = None  # feature count once flattened
    pools = 0
    last_fc = max((i for i, layer in enumerate(layers) if layer.kind == "fc"), default=-1)
    classifier_inside = last_fc == len(layers) - 1

    def sized(n_in: int, n_out: int, token: int) -> None:
        # PyTorch refuses a weight whose size overflows 64 bits with a bare TypeError: say which layer, and refuse
        # far below that, where no machine could hold the layer anyway.
        if n_in * n_out > MAX_LAYER_WEIGHTS:
            raise _bad(arch, f"token {token}: a {n_in:,} × {n_out:,} layer, more than {MAX_LAYER_WEIGHTS:,} weights")

    def flatten() -> int:
        nonlocal flat
        if flat is None:
            mods.append(nn.Flatten())
            flat = channels * h * w
        return flat

    for i, layer in enumerate(layers):
        k = layer.kind
        if k in ("c", "r", "mp", "gap") and flat is not None:
            raise _bad(arch, f"'{k}' (token {layer.token_pos}) after the network was flattened")
        if k == "c":
            out = int(round(width * width_growth**pools))
            sized(channels * 9, out, layer.token_pos)
            mods += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        elif k == "r":
            out = int(round(width * width_growth**pools))
            sized(max(channels, out) * 9, out, layer.token_pos)
            mods.append(ResidualBlock(channels, out))
            channels = out
        elif k == "mp":
            if h < 2 or w < 2:
                raise _bad(arch, f"'mp' (token {layer.token_pos}) on a {h}×{w} feature map: input too small")
            mods.append(nn.MaxPool2d(2))
            h, w, pools = h // 2, w // 2, pools + 1
        elif k == "gap":
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            flat = channels
        elif k == "fc":
            n_in = flatten()
            sized(n_in, num_classes if i == last_fc and classifier_inside else fc_width, layer.token_pos)
            if i == last_fc and classifier_inside:
                mods.append(nn.Linear(n_in, num_classes))
                flat = num_classes
            else:
                mods += [nn.Linear(n_in, fc_width), nn.ReLU(inplace=True)]
                flat = fc_width
        elif k == "bn":
            mods.append(nn.BatchNorm2d(channels) if flat is None else nn.BatchNorm1d(flat))
        elif k == "d":
            mods.append(nn.Dropout(dropout))
    if not classifier_inside:
        n_in = flatten()
        sized(n_in, num_classes, len(layers) + 1)
        mods.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*mods)


@dataclass(frozen=True)
class ModelSpec:
    """An architecture with its settings: the paper's notation with its widths and dropout, or a library's
    network by name (`torchvision/resnet18`, `timm/…`: `core/library_models.py`) with its stem."""

    architecture: str
    width: int = 32
    width_growth: float = 2.0
    fc_width: int = 128
    dropout: float = 0.25
    stem: str = "auto"  # a library network's: auto (small images keep their resolution), small, standard

    def build(self, input_shape: tuple[int, int, int], num_classes: int, mean: list[float] | None = None,
              std: list[float] | None = None, weights: str | None = None) -> nn.Sequential:
        """The network for C×H×W inputs and `num_classes` logits, its input normalisation first; a library's
        started from `weights` (a name or a local file) where given."""
        if library_models.is_library(self.architecture):
            channels = input_shape[0]
            return nn.Sequential(Normalize(mean or [0.5] * channels, std or [0.25] * channels),
                                 library_models.build(self.architecture, input_shape, num_classes, self.stem,
                                                      weights))
        return build_model(self.architecture, input_shape, num_classes, width=self.width,
                           width_growth=self.width_growth, fc_width=self.fc_width,
                           dropout=self.dropout, mean=mean, std=std)

    def check(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        """Raise ArchitectureError unless the network builds for this input; allocates nothing."""
        with torch.device("meta"):
            self.build(input_shape, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
