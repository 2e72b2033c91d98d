"""Mentors known only by their answers: class probabilities for a batch of images.

Nothing about a black box's architecture or training data is needed. It is
asked about float32 images in [0, 1], N×C×H×W in the data set's shape, and
answers N×K probabilities (or logits, softmaxed here, with `outputs="logits"`).
Three kinds:

- `torchscript`: a TorchScript file (`torch.jit.save`);
- `onnx`: an ONNX file, run by onnxruntime (its first input takes the images);
- `http`: an endpoint speaking MLflow's scoring protocol, so `mlflow models serve`
  works as well as `deepmimic serve`: POST `{"inputs": images}` as JSON, answer
  `{"predictions": probabilities}`. Requests are batched, time out, are retried
  with back-off on connection errors, 429 and 5xx, and keep under a rate limit.

Every black box counts the queries it answered.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import UserError


class BlackBoxError(UserError):
    """A black-box mentor that cannot be reached or answers something other than probabilities."""


@dataclass
class Queries:
    """What a black box was asked: requests (calls, one per batch), images, and retried requests; and the images
    whose answers came from the answer cache instead (`core/answer_cache.py`: asked before, not paid again)."""

    requests: int = 0
    images: int = 0
    retries: int = 0
    cached: int = 0

    def __add__(self, other: Queries) -> Queries:
        return Queries(self.requests + other.requests, self.images + other.images, self.retries + other.retries,
                       self.cached + other.cached)


class BlackBox(ABC):
    """A mentor that answers probabilities, asked in batches of `batch_size`."""

    def __init__(self, where: str, batch_size: int = 256,
                 outputs: Literal["probabilities", "logits"] = "probabilities") -> None:
        self.where, self.batch_size, self.outputs = where, batch_size, outputs
        self.queries = Queries()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N×K float32) for uint8 `images` (N×C×H×W)."""
        answers = []
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size].astype(np.float32) / 255.0
            answer = np.asarray(self._ask(batch), dtype=np.float32)
            self.queries.requests += 1
            self.queries.images += len(batch)
            answers.append(self._checked(answer, len(batch)))
        return np.concatenate(answers)

    def _checked(self, answer: np.ndarray, n: int) -> np.ndarray:
        if answer.ndim != 2 or answer.shape[0] != n or answer.shape[1] < 2:
            raise BlackBoxError(f"black box {self.where}: answered shape {answer.shape} for {n} images, "
                                f"expected ({n}, classes)")
        if self.outputs == "logits":
            shifted = np.exp(answer - answer.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        if (answer < -1e-6).any() or not np.allclose(answer.sum(axis=1), 1.0, atol=1e-3):
            raise BlackBoxError(f"black box {self.where}: its answers are not probabilities "
                                "(rows must be ≥ 0 and sum to 1; "
                                "set outputs: logits if it answers logits)")
        return answer

    @abstractmethod
    def _ask(self, batch: np.ndarray) -> np.ndarray:
        """The raw answer for one batch of float images."""


class TorchScriptBox(BlackBox):
    def __init__(self, path: str, **kw: object) -> None:
        super().__init__(path, **kw)  # type: ignore[arg-type]
        import torch

        try:
            self.model = torch.jit.load(path, map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as e:
            raise BlackBoxError(f"black box {path}: not a TorchScript file ({str(e).splitlines()[0][:120]})") from None

    def _ask(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).float().numpy()


class OnnxBox(BlackBox):
    def __init__(self, path: str, **kw: object) -> None:
        super().__init__(path, **kw)  # type: ignore[arg-type]
        try:
            import onnxruntime
        except ImportError:
            raise BlackBoxError("ONNX mentors need onnxruntime: pip install 'deepmimic-sweep[onnx]'") from None
        try:
            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise BlackBoxError(f"black box {path}: not an ONNX model ({str(e).splitlines()[0][:120]})") from None
        self.input = self.session.get_inputs()[0].name

    def _ask(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0]


class HttpBox(BlackBox):
    def __init__(self, url: str, timeout_s: float = 30.0, retries: int = 3, max_requests_per_s: float | None = None,
                 **kw: object) -> None:
        super().__init__(url, **kw)  # type: ignore[arg-type]
        self.timeout_s, self.retries = timeout_s, retries
        self.interval = 1.0 / max_requests_per_s if max_requests_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def _wait_for_turn(self) -> None:
        """Keep requests at least `1 / max_requests_per_s` apart."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(start - now)

    def _ask(self, batch: np.ndarray) -> np.ndarray:
        body = json.dumps({"inputs": batch.tolist()}).encode()
        for attempt in range(self.retries + 1):
            self._wait_for_turn()
            request = urllib.request.Request(self.where, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500:
                    raise BlackBoxError(f"black box {self.where}: HTTP {e.code} {e.reason}") from None
                failure, wait = f"HTTP {e.code}", float(e.headers.get("Retry-After") or 0)
            except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
                failure, wait = str(getattr(e, "reason", e)), 0.0
            except (ValueError, KeyError, TypeError):
                raise BlackBoxError(f"black box {self.where}: answer is not JSON with 'predictions'") from None
            if attempt < self.retries:
                self.queries.retries += 1
                time.sleep(max(wait, min(0.2 * 2**attempt, 5.0)))
        raise BlackBoxError(f"black box {self.where}: no answer after {self.retries + 1} tries (last: {failure})")


def check_listening(url: str, timeout_s: float) -> None:
    """A BlackBoxError naming `url` unless something accepts connections at its host and port: a mentor that is
    down is found before anything trains, without spending a query on it."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise BlackBoxError(f"black box {url}: no host in the URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname, port), timeout=min(timeout_s, 10.0)).close()
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise BlackBoxError(f"black box {url}: not answering ({why}); is its server up?") from None


def open_black_box(kind: str, location: str, batch_size: int = 256, outputs: str = "probabilities",
                   timeout_s: float = 30.0, retries: int = 3, max_requests_per_s: float | None = None) -> BlackBox:
    """The black box of `kind` at `location` (a file path, or the endpoint's URL)."""
    common = {"batch_size": batch_size, "outputs": outputs}
    if kind == "http":
        return HttpBox(location, timeout_s, retries, max_requests_per_s, **common)
    if not os.path.isfile(location):
        raise BlackBoxError(f"black box {location}: no such file")
    return (TorchScriptBox if kind == "torchscript" else OnnxBox)(location, **common)
