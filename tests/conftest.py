"""Shared fixtures and helpers: tiny data, one local Ray for the whole session,
the CLI as a real process, and writers of data sets' published file formats."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEEPMIMIC = [sys.executable, "-m", "deepmimic.cli"]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share two cores: PyTorch's thread a core in each would leave every operation of a test that
    # trains here waiting on a thread the other worker's processes hold (benchmarks/RESULTS.md).
    torch.set_num_threads(1)


# Session fixtures whose modules run in one pytest-xdist worker, so each is made once (`pytest_collection_modifyitems`).
SHARED = ("served_sweep", "model_server")
# The slowest groups (a module, or the modules sharing a fixture of SHARED), slowest first by their times in
# benchmarks/RESULTS.md: each worker takes the next group as it finishes one, so none is left with a long
# group at the end while the other has nothing to do.
SLOWEST_FIRST = ("served_sweep", "test_faults", "test_tracking_outage", "test_interrupts", "model_server",
                 "test_pipeline", "test_shared_cache", "test_job_submit", "test_multinode", "test_own_data",
                 "test_streaming", "test_search", "test_pretrained", "test_train", "test_student_sets",
                 "test_mentors")


def _module(item: pytest.Item) -> str:
    return item.path.relative_to(ROOT / "tests").with_suffix("").as_posix()


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups into the tests' ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each module's tests in one xdist group (`make test` runs `-n 2 --dist loadgroup`): a module's fixtures
    are made once, in one worker; the modules of a session fixture in `SHARED` share a group; and the groups
    run slowest first. Without xdist, only the order changes (each module's tests stay together)."""
    shared = {_module(item): f for item in items for f in SHARED if f in item.fixturenames}
    rank = {group: n for n, group in enumerate(SLOWEST_FIRST)}

    def group(item: pytest.Item) -> str:
        return shared.get(_module(item), _module(item))

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable: the rest as collected


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under `--dist loadgroup` each test's id carries its group: a pytest whose ids drop it (pytest-xdist#1386)
    would split modules between the workers, each making the module's fixtures, without a word."""
    if getattr(session.config.option, "loadgroup", False) and any("@" not in i.nodeid for i in session.items):
        raise pytest.UsageError("pytest-xdist lost the tests' groups (pytest-xdist#1386): pytest<9.2 keeps them")


def imported_by_fresh_python(code: str, *modules: str) -> list[str]:
    """Which of `modules` a fresh Python has imported once it has run `code`."""
    check = f"\nimport sys; print(','.join(m for m in {list(modules)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().split(",") if m]


def session_ray() -> Any:
    """A real local Ray, started once in each pytest-xdist worker and shared by the tests that need one (a test
    that shuts it down gets a fresh one for the next); the `ray` module. Without Ray's dashboard: no test reads
    it, and its processes poll for as long as the Ray lives (a CLI starting a Ray of its own keeps it, as a
    user's does)."""
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from deepmimic.distributed.cluster import connect

    connect(dashboard=False)
    return ray


@pytest.fixture
def ray_local():
    """The session's Ray (`session_ray`)."""
    return session_ray()


@pytest.fixture(scope="module")
def ray_address() -> str:
    """The session's Ray's address, for the CLI processes a module starts (RAY_ADDRESS)."""
    return session_ray().get_runtime_context().gcs_address


def raylet_children(match: Callable[[Path], bool]) -> list[int]:
    """The processes of this session's Ray (children of its raylet: another Ray's on the machine are not ours to
    kill) whose /proc folder `match` accepts."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == raylet \
                    and match(proc):
                pids.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return pids


def trial_pids() -> list[int]:
    """The processes running a Tune function trial (Ray titles them `ray::ImplicitFunc…`) on this session's Ray."""
    return raylet_children(lambda proc: b"ImplicitFunc" in (proc / "cmdline").read_bytes())


@pytest.fixture(scope="session")
def digits():
    from deepmimic.core.datasets import load_dataset

    return load_dataset("digits")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], what: str = "a condition", timeout: float = 300.0) -> Any:
    """`check()`'s first truthy answer, polled every 0.2 s (a server not listening yet counts as no)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def mlflow_process(args: list[str], ready: str, env: dict | None = None, port: int | None = None,
                   stop: int = signal.SIGTERM) -> Iterator[str]:
    """`python -m mlflow ARGS` (`server`, `models serve`) as a real process on loopback (`port`, else a free one),
    in a process group of its own; its base URL once `ready` answers 200 (its own error output if it exits
    first); the whole group sent `stop` afterwards. Without the tracking server's job runner: its huey consumers
    (seven processes) outlive a terminated server. A new SQLite store starts as the sweeps' do, a copy of an empty
    one migrated once (`tracking.new_store`): MLflow's migrations would cost each new server seconds."""
    import tempfile
    import urllib.request

    from deepmimic.tracking import new_store

    store = args[args.index("--backend-store-uri") + 1] if "--backend-store-uri" in args else ""
    if store.startswith("sqlite:///"):
        new_store(store.removeprefix("sqlite:///"))  # not migrated again
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    with tempfile.TemporaryFile() as log:  # not a pipe: a server's request log would fill it and block it
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"mlflow {' '.join(args)} exited: {log.read()[-2000:]}")
            with urllib.request.urlopen(url + ready, timeout=5) as response:
                return response.status == 200

        try:
            wait_for(up, url + ready, 120)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, stop)
            proc.wait(timeout=30)


def sweep(ray, tmp_path: Path, space: dict, out: str, cache: str,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """`deepmimic sweep` of `space` as a real process on the session's Ray; it must succeed."""
    path = tmp_path / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, **(env or {})}
    proc = subprocess.run([*DEEPMIMIC, "sweep", str(path), "--out", out, "--cache", cache],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


SERVED = {
    "name": "served",
    "dataset": {"name": "digits"},
    "training": {"epochs": 3, "batch_size": 64},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": "Student-A", "architecture": "c-mp-fc2", "width": 8},
                 {"name": "Student-B", "architecture": "c-fc", "width": 4}],
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
    "fault_tolerance": {"checkpoint_every": 0},
    "grid": {"split.mentor_ratio": [0.2, 0.5], "student": ["Student-A", "Student-B"]},
}


@pytest.fixture(scope="session")
def served_sweep(tmp_path_factory) -> Iterator[tuple[str, Path, subprocess.CompletedProcess]]:
    """`SERVED` (2 mentors, 4 students) swept as a cluster user does: on a storage URI (file:// here, s3:// or
    gs:// there, through pyarrow) and tracked live to a real `mlflow server` on loopback, which goes on serving
    it for the session's tests (the browser's among them). The server's URL, the storage root, the sweep."""
    ray = session_ray()
    tmp = tmp_path_factory.mktemp("served")
    root, path = tmp / "bucket", tmp / "served.yaml"
    path.write_text(yaml.safe_dump(SERVED))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    store = ["server", "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
             "--artifacts-destination", str(tmp / "artifacts")]
    with mlflow_process(store, "/health") as uri:
        proc = subprocess.run([*DEEPMIMIC, "sweep", str(path), "--storage", f"file://{root}"], capture_output=True,
                              text=True, env={**env, "MLFLOW_TRACKING_URI": uri}, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        yield uri, root, proc


def idx_bytes(arr: np.ndarray, magic: bytes = b"\x00\x00\x08") -> bytes:
    """An IDX file (MNIST's format): magic, dimensions, then the bytes."""
    dims = b"".join(struct.pack(">I", d) for d in arr.shape)
    return magic + bytes([arr.ndim]) + dims + arr.astype(np.uint8).tobytes()


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did, which wrote CIFAR's published batches: bytes as Python 2 `str`
    (SHORT_BINSTRING/BINSTRING), not protocol 2's `_codecs.encode` call that Python 3 writes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_str2(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str2


def python2_pickle(obj: object) -> bytes:
    """`obj` as a Python 2 program's `cPickle.dump(obj, f, 2)` wrote it (keys and names as bytes here)."""
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def cifar_batch(n: int, label_key: str, classes: int, row: int = 3072, seed: int = 0) -> dict:
    """One batch of CIFAR's python pickles."""
    return {
        b"batch_label": b"testing batch",
        b"data": np.random.default_rng(seed).integers(0, 256, (n, row), dtype=np.uint8),
        label_key.encode(): [i % classes for i in range(n)],
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


@contextlib.contextmanager
def scoring_endpoint(model, paid: dict | None = None) -> Iterator[str]:
    """A user's own model endpoint speaking MLflow's scoring protocol, in a thread: a stand-in for a
    black-box mentor's server (`deepmimic serve` itself is tested through a real process). `paid`: it counts the
    images it answers in `paid["images"]` and answers 503 to a request that would take it past `paid["limit"]`
    (None: no limit), as a paid API whose credit ran out."""
    from deepmimic.core.serving import Probabilities

    wrapped = Probabilities(model.cpu()).eval()
    paid = paid if paid is not None else {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            images = np.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
            if paid.get("limit") is not None and paid.get("images", 0) + len(images) > paid["limit"]:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            paid["images"] = paid.get("images", 0) + len(images)
            with torch.inference_mode():
                probs = wrapped(torch.from_numpy(images.astype(np.float32))).numpy()
            data = json.dumps({"predictions": probs.tolist()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/invocations"
    finally:
        server.shutdown()


SERVE_TIMEOUT_S = 10  # a crowd of 200 queues for seconds on 2 busy cores: the timeout is end to end
SHAPE = (1, 8, 8)


def small_checkpoint(folder: Path, digits: Any = None) -> torch.nn.Module:
    """A checkpoint of a small model written to `folder` (trained a few seconds on `digits` where given, else
    untrained); the model."""
    from deepmimic.core import checkpoints
    from deepmimic.core.architectures import ModelSpec, channel_stats
    from deepmimic.core.optimizer import SGD
    from deepmimic.core.training import Training, train

    torch.manual_seed(0)
    stats = channel_stats(digits.train.images) if digits is not None else ([80.0], [60.0])
    net = ModelSpec("c-mp-fc", width=4).build(SHAPE, 10, *stats)
    if digits is not None:
        train(net, torch.from_numpy(digits.train.images), torch.from_numpy(digits.train.labels), Training(epochs=20))
    meta = {"spec": {"architecture": "c-mp-fc", "width": 4}, "shape": list(SHAPE), "num_classes": 10,
            "mean": list(stats[0]), "std": list(stats[1])}
    folder.mkdir()
    checkpoints.save(str(folder), net, SGD(net.parameters(), lr=0.1), 1, [], meta)
    return net


class Served(NamedTuple):
    url: str
    port: int
    model: torch.nn.Module   # as served: probabilities for [0, 1] images
    pid: int                 # the server's process, leader of a session its Ray's processes share


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, digits) -> Iterator[Served]:
    """`deepmimic serve` of a small model trained on digits (a mentor known only by its endpoint), two replicas,
    on a free loopback port, its own local Ray; stopped with Ctrl-C afterwards. The modules using it
    (`test_served_budget`, `test_serving`) sort next to each other: it lives between them."""
    from deepmimic.core.serving import Probabilities

    tmp = tmp_path_factory.mktemp("serve")
    net = small_checkpoint(tmp / "checkpoint", digits)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = open(tmp / "serve.log", "w")
    args = ["serve", str(tmp / "checkpoint"), "--port", str(port), "--timeout", str(SERVE_TIMEOUT_S),
            "--max-images", "64", "--replicas", "2"]
    proc = subprocess.Popen([*DEEPMIMIC, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: "serving on" in (tmp / "serve.log").read_text() or proc.poll() is not None, "the server", 180)
    assert proc.poll() is None, (tmp / "serve.log").read_text()[-3000:]
    yield Served(f"http://127.0.0.1:{port}", port, Probabilities(net.eval()), proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0 and "stopped" in (tmp / "serve.log").read_text()


def image_folder(root: Path, per_class: int = 4, classes: int = 3, side: int = 8, suffix: str = ".png",
                 test: int = 2, pool: int = 0, mode: str = "L") -> Path:
    """A user's ImageFolder layout of real image files (Pillow-written PNG or JPEG): root/train/<class>/,
    root/test/<class>/ (where `test`), root/unlabeled/<sub>/ (where `pool`); pixels encode the class."""
    from PIL import Image

    rng = np.random.default_rng(0)

    def write(folder: Path, n: int, c: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = (rng.integers(0, 40, (side, side)) + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).convert(mode).save(folder / f"{i}{suffix}")

    for c in range(classes):
        write(root / "train" / f"class{c}", per_class, c)
        if test:
            write(root / "test" / f"class{c}", test, c)
    if pool:
        write(root / "unlabeled" / "batch-a", pool, 0)
    return root


def broken_image_folder(root: Path, how: str) -> Path:
    """`image_folder(root, pool=3)` with one mistake a user makes (`how`: corrupt, truncated, not an image,
    empty class, sizes, folder inside a class, loose file, pool not an image, 16-bit, enormous, link out, pool
    link to a folder; "" for none)."""
    from PIL import Image

    image_folder(root, pool=3)
    first = root / "train" / "class0" / "0.png"
    if how == "corrupt":
        first.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    elif how == "truncated":
        (root / "test" / "class1" / "1.png").write_bytes((root / "test" / "class1" / "1.png").read_bytes()[:45])
    elif how == "not an image":
        (root / "train" / "class2" / "labels.csv").write_text("a,b")
    elif how == "empty class":
        (root / "train" / "class3").mkdir()
    elif how == "sizes":
        Image.new("L", (16, 16)).save(root / "train" / "class1" / "large.png")
    elif how == "folder inside a class":
        (root / "train" / "class0" / "unlabeled").mkdir()
    elif how == "loose file":
        first.rename(root / "train" / "0.png")
    elif how == "pool not an image":
        (root / "unlabeled" / "batch-a" / "notes.txt").write_text("x")
    elif how == "16-bit":
        Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(first)
    elif how == "enormous":  # a PNG whose header says 40,000² pixels: a decompression bomb, refused unread
        png = bytearray(first.read_bytes())
        png[16:24] = struct.pack(">II", 40_000, 40_000)
        png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # the IHDR chunk's CRC
        first.write_bytes(bytes(png))
    elif how == "link out":
        first.unlink()
        first.symlink_to(root.parent / "outside.png")
        Image.new("L", (8, 8)).save(root.parent / "outside.png")
    elif how == "pool link to a folder":
        (root / "unlabeled" / "batch-b").symlink_to(root / "unlabeled" / "batch-a")
    return root


def parquet_images(path: Path, images: np.ndarray, labels: list | None = None, encoded: bool = True,
                   image_column: str = "image", label_column: str = "label") -> Path:
    """A Parquet file of images (uint8 N×H×W or N×H×W×C): PNG bytes (`encoded`) or fixed-shape tensors."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    if encoded:
        cells = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            cells.append(buf.getvalue())
        column = pa.array(cells, pa.binary())
    else:
        kind = pa.fixed_shape_tensor(pa.uint8(), images.shape[1:])
        column = pa.ExtensionArray.from_storage(kind, pa.FixedSizeListArray.from_arrays(
            pa.array(images.reshape(-1), pa.uint8()), int(np.prod(images.shape[1:]))))
    table = pa.table({image_column: column, **({label_column: labels} if labels is not None else {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
