"""A model's checkpoint folder: weights, the recipe that rebuilds the network,
training progress, and its manifest (see `artifacts`), written last.

Everything is loaded with `torch.load(weights_only=True)`, and only after the
manifest matches: a folder cut off half-way is refused, never trained on.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
from torch import nn

from . import artifacts
from .architectures import ModelSpec
from .optimizer import SGD


def save(folder: str, net: nn.Module, opt: SGD, epoch: int, history: list[dict[str, Any]],
         meta: dict[str, Any], extra: dict[str, bytes] | None = None) -> None:
    """Everything a restarted run needs to go on from `epoch` (and `extra` files, e.g. a summary), then the manifest."""
    torch.save(net.state_dict(), os.path.join(folder, "model.pt"))
    torch.save(opt.state_dict(), os.path.join(folder, "optimizer.pt"))
    files = {"model.json": json.dumps(meta).encode(),
             "progress.json": json.dumps({"epoch": epoch, "history": history}).encode(), **(extra or {})}
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    artifacts.seal(folder)


def model_meta(folder: str) -> dict[str, Any]:
    """How to rebuild the checkpoint's network: spec, input shape, classes, normalisation."""
    with open(os.path.join(folder, "model.json")) as f:
        return json.load(f)


def load_model(folder: str, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the trained network of a checkpoint folder, in eval mode on `device`."""
    artifacts.verify(folder)
    meta = model_meta(folder)
    model = ModelSpec(**meta["spec"]).build(tuple(meta["shape"]), meta["num_classes"], meta["mean"], meta["std"])
    model.load_state_dict(torch.load(os.path.join(folder, "model.pt"), map_location=device, weights_only=True))
    return model.to(device).eval()


def load_model_at(uri: str, device: torch.device | str = "cpu") -> nn.Module:
    """`load_model` of a folder on local disk or on storage (`s3://…`: copied to a temporary folder first)."""
    if not artifacts.is_uri(uri):
        return load_model(uri, device)
    fs, path = artifacts.filesystem(uri)
    with tempfile.TemporaryDirectory() as local:
        pafs.copy_files(path, local, source_filesystem=fs)
        return load_model(local, device)


def progress(folder: str) -> dict[str, Any]:
    """The epoch a checkpoint reached and the history up to it (call `artifacts.verify` first)."""
    with open(os.path.join(folder, "progress.json")) as f:
        return json.load(f)


def load_progress(folder: str, net: nn.Module) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """Load a checkpoint's weights into `net`; return the epoch reached, the history and the optimizer state."""
    artifacts.verify(folder)
    net.load_state_dict(torch.load(os.path.join(folder, "model.pt"), map_location="cpu", weights_only=True))
    opt = torch.load(os.path.join(folder, "optimizer.pt"), map_location="cpu", weights_only=True)
    done = progress(folder)
    return done["epoch"], done["history"], opt


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file (read back with `np.load(..., allow_pickle=False)`)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
