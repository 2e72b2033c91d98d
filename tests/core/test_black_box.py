import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from deepmimic.core import serving
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.black_box import BlackBoxError, open_black_box

from ..conftest import scoring_endpoint

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 1, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ModelSpec("c-mp-fc", width=4).build((1, 8, 8), 10, [0.3], [0.3]).eval()


def expected(model):
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(IMAGES).float()), 1).numpy()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_exported_model_answers_its_probabilities_in_batches(model, tmp_path, fmt):
    path = str(tmp_path / f"mentor.{fmt}")
    serving.export(model, (1, 8, 8), fmt, path)
    box = open_black_box(fmt, path, batch_size=7)
    np.testing.assert_allclose(box.probabilities(IMAGES), expected(model), atol=1e-5)
    assert (box.queries.requests, box.queries.images) == (3, 20)


class ByBatchSize(torch.nn.Module):
    """A model whose answer hangs on its batch's size, which a trace freezes at the size it was traced at."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * (1.0 if x.shape[0] == 2 else -1.0)


def test_a_trace_that_answers_otherwise_than_its_model_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="answers otherwise"):
        serving.export(ByBatchSize(), (1, 8, 8), "torchscript", str(tmp_path / "m.torchscript"))
    assert list(tmp_path.iterdir()) == []


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    return f"http://{host}:{port}/invocations"


def test_a_served_model_answers_its_probabilities_over_http(model):
    with scoring_endpoint(model) as url:
        box = open_black_box("http", url, batch_size=8)
        np.testing.assert_allclose(box.probabilities(IMAGES), expected(model), atol=1e-5)
        assert (box.queries.requests, box.queries.images, box.queries.retries) == (3, 20, 0)


def flaky_server(failures: int, status: int = 503, delay_s: float = 0.0, answer=None):
    """Fails the first `failures` requests with `status`, then answers uniform probabilities (or `answer`)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
            seen.append(time.monotonic())
            time.sleep(delay_s)
            code = status if len(seen) <= failures else 200
            predictions = answer if answer is not None else np.full((n, 10), 0.1).tolist()
            body = json.dumps({"predictions": predictions}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), seen


def test_failed_requests_are_retried_and_counted():
    server, seen = flaky_server(failures=2)
    try:
        box = open_black_box("http", serve(server), batch_size=20, retries=3)
        assert box.probabilities(IMAGES).shape == (20, 10)
        assert (box.queries.requests, box.queries.retries, len(seen)) == (1, 2, 3)
    finally:
        server.shutdown()


def test_a_mentor_that_keeps_failing_ends_in_one_clear_error():
    server, seen = flaky_server(failures=100)
    try:
        with pytest.raises(BlackBoxError, match=r"no answer after 2 tries \(last: HTTP 503\)"):
            open_black_box("http", serve(server), retries=1).probabilities(IMAGES)
    finally:
        server.shutdown()


def test_a_slow_mentor_times_out():
    server, _ = flaky_server(failures=0, delay_s=1.0)
    try:
        with pytest.raises(BlackBoxError, match="timed out"):
            open_black_box("http", serve(server), timeout_s=0.2, retries=0).probabilities(IMAGES)
    finally:
        server.shutdown()


def test_requests_keep_under_the_rate_limit():
    server, seen = flaky_server(failures=0)
    try:
        box = open_black_box("http", serve(server), batch_size=4, max_requests_per_s=20)
        start = time.monotonic()
        box.probabilities(IMAGES)
        assert len(seen) == 5 and time.monotonic() - start >= 4 / 20  # the 5th may start 4 intervals after the 1st
    finally:
        server.shutdown()


def test_answers_that_are_not_probabilities_are_refused_unless_declared_logits():
    server, _ = flaky_server(failures=0, answer=np.full((20, 10), 3.0).tolist())
    try:
        url = serve(server)
        with pytest.raises(BlackBoxError, match="not probabilities"):
            open_black_box("http", url, batch_size=20).probabilities(IMAGES)
        probs = open_black_box("http", url, batch_size=20, outputs="logits").probabilities(IMAGES)
        np.testing.assert_allclose(probs, 0.1, atol=1e-6)
    finally:
        server.shutdown()


def test_an_onnx_export_is_one_self_contained_file(model, tmp_path):
    serving.export(model, (1, 8, 8), "onnx", str(tmp_path / "mentor.onnx"))
    assert [p.name for p in tmp_path.iterdir()] == ["mentor.onnx"]
