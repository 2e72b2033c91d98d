"""A trained model turned into a black box: exported to TorchScript or ONNX, or
served over HTTP with the protocol `black_box.HttpBox` speaks.

The exported or served model takes float images in [0, 1] and answers
probabilities, so whoever mimics it needs nothing else about it.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

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


def export(model: nn.Module, input_shape: tuple[int, int, int], fmt: str, path: str) -> None:
    """Write `model` as a TorchScript or ONNX black box at `path` (atomically)."""
    wrapped = Probabilities(model.cpu().to(memory_format=torch.contiguous_format)).eval()
    example = torch.rand(2, *input_shape)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(wrapped, example).save(tmp)
    elif fmt == "onnx":
        try:
            torch.onnx.export(wrapped, (example,), tmp, input_names=["images"], output_names=["probabilities"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
                              external_data=False)  # one file: weights beside it would keep the temporary name
        except ImportError as e:
            hint = "pip install 'deepmimic-sweep[onnx]'"
            raise UserError(f"ONNX export needs onnx and onnxscript: {hint} ({e})") from None
    else:
        raise UserError(f"export format {fmt!r}: expected torchscript or onnx")
    os.replace(tmp, path)


class _Handler(BaseHTTPRequestHandler):
    predict: Callable[[np.ndarray], np.ndarray]

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            images = np.asarray(body["inputs"], dtype=np.float32)
            if images.ndim != 4:
                raise ValueError(f"inputs must be N×C×H×W, got {images.ndim} dimensions")
            answer = {"predictions": self.predict(images).tolist()}
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            return self._send(400, {"error": str(e)[:300]})
        self._send(200, answer)

    def _send(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # one line per request would drown the sweep's output
        pass


def http_server(model: nn.Module, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server answering POST `{"inputs": images}` with `{"predictions": probabilities}`;
    call `serve_forever()` (port 0 picks a free port: see `server_address`)."""
    wrapped = Probabilities(model.cpu()).eval()
    lock = threading.Lock()  # one forward pass at a time: PyTorch already uses every core for one

    def predict(images: np.ndarray) -> np.ndarray:
        with lock, torch.inference_mode():
            return wrapped(torch.from_numpy(images)).numpy()

    handler = type("Handler", (_Handler,), {"predict": staticmethod(predict)})
    return ThreadingHTTPServer((host, port), handler)
