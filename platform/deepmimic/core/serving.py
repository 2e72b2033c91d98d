"""A trained model turned into a black box: exported to TorchScript or ONNX, or
served (`distributed/serving.py`) with the protocol `black_box.HttpBox` speaks,
whose requests `parse_inputs` checks.

The exported or served model takes float images in [0, 1] and answers
probabilities, so whoever mimics it needs nothing else about it.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import torch
from torch import nn

from ..errors import UserError


class Probabilities(nn.Module):
    """Wraps a model of ours (which takes uint8-range input and returns logits) into [0, 1] in, probabilities out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images * 255.0), dim=1)


def _wrapped(model: nn.Module) -> Probabilities:
    """`model` on the CPU, NCHW, as [0, 1] in, probabilities out: what every exported form traces."""
    return Probabilities(model.cpu().to(memory_format=torch.contiguous_format)).eval()


def black_box(model: nn.Module, input_shape: tuple[int, int, int]) -> torch.jit.ScriptModule:
    """`model` as a self-contained TorchScript black box (no code of ours needed to load it): [0, 1] images
    in, probabilities out, any batch size."""
    wrapped = _wrapped(model)
    with torch.no_grad():
        # torch's own check of a trace (`check_trace`) compares through torch.testing, whose first call imports
        # torch.distributed: CPU time in each process that logs a model (benchmarks/RESULTS.md). One
        # comparison on images other than the trace's checks the same thing: that the trace is the model.
        traced = torch.jit.trace(wrapped, torch.rand(2, *input_shape), check_trace=False)
        probe = torch.rand(3, *input_shape)
        if not torch.allclose(traced(probe), wrapped(probe), rtol=1e-4, atol=1e-6):
            raise RuntimeError("the TorchScript trace of the model answers otherwise than the model")
    return traced


def export(model: nn.Module, input_shape: tuple[int, int, int], fmt: str, path: str) -> None:
    """Write `model` as a TorchScript or ONNX black box at `path` (atomically)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "torchscript":
        black_box(model, input_shape).save(tmp)
    elif fmt == "onnx":
        try:
            torch.onnx.export(_wrapped(model), (torch.rand(2, *input_shape),), tmp, input_names=["images"],
                              output_names=["probabilities"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              # one file: weights beside it would keep the temporary name
                              verbose=False, external_data=False)
        except ImportError as e:
            hint = "pip install 'deepmimic-sweep[onnx]'"
            raise UserError(f"ONNX export needs onnx and onnxscript: {hint} ({e})") from None
    else:
        raise UserError(f"export format {fmt!r}: expected torchscript or onnx")
    os.replace(tmp, path)


def parse_inputs(body: bytes, shape: tuple[int, int, int], max_images: int) -> np.ndarray:
    """A scoring request's images (MLflow's protocol: `{"inputs": N×C×H×W floats in [0, 1]}`), checked
    before any model sees them; a ValueError names what is wrong (the server's 400)."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(request, dict) or set(request) != {"inputs"}:
        raise ValueError('expected a JSON object {"inputs": images}')
    try:
        raw = np.asarray(request["inputs"])
    except ValueError:
        raise ValueError("inputs: rows of different lengths") from None
    want = "×".join(map(str, shape))
    if raw.ndim != 4 or raw.shape[1:] != tuple(shape) or not len(raw):
        raise ValueError(f"inputs: expected N×{want} images, got shape {'×'.join(map(str, raw.shape))}")
    if raw.dtype.kind not in "iuf":  # no strings, booleans or nulls passed off as numbers
        raise ValueError(f"inputs: expected numbers, got {raw.dtype.name} values")
    if len(raw) > max_images:
        raise ValueError(f"inputs: {len(raw)} images, at most {max_images} per request")
    images = raw.astype(np.float32)
    if not np.isfinite(images).all():
        raise ValueError(f"inputs: {int((~np.isfinite(images)).sum())} values are not finite")
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError("inputs: values must lie in [0, 1]")
    return images
