"""`deepmimic serve`: a trained checkpoint behind Ray Serve, answering MLflow's scoring protocol
(POST /invocations `{"inputs": images}` → `{"predictions": probabilities}`), the one the
black-box mentors speak.

Ray Serve brings the server: its proxy (uvicorn) takes the connections, requests are batched
across clients (`serve.batch`), replicas are health-checked and may hold GPUs. What it lacks
for a server exposed to abuse is added in two places:

- at the proxy (`proxy_guard`, loaded by Serve from RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH):
  a body without a length gets 411 and one over the limit 413 before it is read, and the
  headers by which any client could lift the request timeout are dropped;
- in the replica: every request's images are checked (shape, type, finite, in [0, 1];
  `core.serving.parse_inputs`) before the model runs, and answers are strict JSON.

Slow or incomplete requests end at the proxy's request timeout (408); queues are bounded, so
memory is too: at most (ongoing + queued requests) × the body limit.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time.
import json
import os
from dataclasses import dataclass

import numpy as np
import ray
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from ..core import checkpoints
from ..core.serving import Probabilities, parse_inputs

BODY_LIMIT_ENV = "DEEPMIMIC_SERVE_MAX_BODY_BYTES"
# Ray Serve lets a client set its own request timeout (0 disables it) and keep a request alive after it
# disconnects: neither is a client's to decide on a public endpoint.
_CLIENT_OVERRIDES = {b"x-request-timeout-seconds", b"x-request-disconnect-disabled"}
RETRY_AFTER = b"1"  # seconds: a busy or restarting server is worth asking again soon


@dataclass(frozen=True)
class Limits:
    max_images: int = 256           # per request
    max_body_bytes: int = 0         # 0: derived from max_images and the image shape
    request_timeout_s: float = 30.0
    # Requests a replica holds at once, batched first come first served. At 32, a crowd of 200 waited in Serve's
    # router, whose queue-length probes missed their deadline on 2 busy cores, and some requests starved past
    # their timeout; at 256 every one was answered (benchmarks/RESULTS.md).
    max_ongoing: int = 256
    max_queued: int = 512           # beyond it: 503

    def body_bytes(self, shape: tuple[int, int, int]) -> int:
        """Room for `max_images` images as JSON: up to ~24 characters a value, plus the envelope."""
        return self.max_body_bytes or self.max_images * int(np.prod(shape)) * 24 + 4096


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error_code": status, "message": message}, status_code=status, headers=headers)


class _Guard:
    """ASGI middleware run in Serve's proxy, before a request reaches any replica."""

    def __init__(self, app, max_body: int) -> None:  # noqa: ANN001 (an ASGI app)
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 (ASGI's own signature)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        started = False

        async def retry_later(message: dict) -> None:
            # Serve's proxy answers 503 without Retry-After when its queues are full, and nothing at all for a
            # request whose replica died under it (uvicorn then answers a bare 500: seen under load with a replica
            # killed): both the server's passing state, so a client is told when to come back. The replicas
            # raise nothing of their own (every bad request is a 4xx), so their rare 500 is treated alike.
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] in (500, 503):
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"retry-after"]
                    message = {**message, "status": 503, "headers": [*headers, (b"retry-after", RETRY_AFTER)]}
            await send(message)

        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _CLIENT_OVERRIDES]
        scope = {**scope, "headers": headers}
        if scope["method"] == "POST":
            length = dict(headers).get(b"content-length")
            if length is None or not length.isdigit():
                return await _error(411, "a body needs a Content-Length")(scope, receive, send)
            if int(length) > self.max_body:
                return await _error(413, f"body of {int(length)} bytes, at most {self.max_body}")(
                    scope, receive, send)
        await self.app(scope, receive, retry_later)
        if not started:  # the proxy gave up on a request whose replica died under it, answering nothing
            await _error(503, "the server lost the replica answering this request; ask again",
                         {"Retry-After": RETRY_AFTER.decode()})(scope, receive, send)


def proxy_guard() -> list:
    """The middlewares Serve's proxy wraps its app in (Serve calls this in the proxy's process)."""
    from starlette.middleware import Middleware

    return [Middleware(_Guard, max_body=int(os.environ[BODY_LIMIT_ENV]))]


# The server answers /invocations and /health only: FastAPI's schema and docs pages would describe it to anyone.
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@ray.remote(num_cpus=0)
class _Meter:
    """What every replica answered, together: as a paid API bills (one per server; outlives a dead replica)."""

    def __init__(self) -> None:
        self.answered = {"requests": 0, "images": 0}

    def add(self, images: int) -> None:
        self.answered["requests"] += 1
        self.answered["images"] += images

    def read(self) -> dict:
        return dict(self.answered)


@serve.deployment(health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(app)
class Scorer:
    """A trained checkpoint's probabilities for batches of images."""

    def __init__(self, checkpoint: str, limits: Limits) -> None:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model = Probabilities(checkpoints.load_model(checkpoint)).eval()
        self.shape = tuple(checkpoints.model_meta(checkpoint)["shape"])
        self.limits = limits
        self.meter = _Meter.options(name="deepmimic-meter", get_if_exists=True, lifetime="detached").remote()

    @app.post("/invocations")
    async def invocations(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > self.limits.body_bytes(self.shape):  # the proxy refuses these first; kept for RAY_ADDRESS
            return _error(413, f"body of {len(body)} bytes, at most {self.limits.body_bytes(self.shape)}")
        try:
            images = parse_inputs(body, self.shape, self.limits.max_images)
        except ValueError as e:
            return _error(400, str(e))
        probabilities = await self.predict(images)
        await self.meter.add.remote(len(images))  # counted before the answer leaves: /stats never lags it
        return Response(json.dumps({"predictions": probabilities.tolist()}, allow_nan=False),
                        media_type="application/json")

    @app.get("/stats")
    async def stats(self) -> dict:
        """Requests and images the server answered since it started, every replica's together."""
        return await self.meter.read.remote()

    @app.get("/ping")
    @app.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def predict(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        """Every waiting request's images in one forward pass, split back per request."""
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.concatenate(requests))).numpy()
        return np.split(out, np.cumsum([len(r) for r in requests])[:-1])


def start(checkpoint: str, host: str, port: int, limits: Limits, replicas: int = 1, gpus: float = 0.0) -> str:
    """Serve `checkpoint` on the connected Ray; the scoring URL. The proxy's guard reads its body limit
    from BODY_LIMIT_ENV, which (with Serve's callback variable) must be set before Ray starts."""
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": limits.request_timeout_s,
                              "keep_alive_timeout_s": 5})
    scorer = Scorer.options(num_replicas=replicas, max_ongoing_requests=limits.max_ongoing,
                            max_queued_requests=limits.max_queued,
                            ray_actor_options={"num_cpus": 1, "num_gpus": gpus})
    serve.run(scorer.bind(checkpoint, limits), name="deepmimic", route_prefix="/", blocking=False)
    return f"http://{host}:{port}/invocations"
