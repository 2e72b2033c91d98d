"""`deepmimic serve` as a real process (Ray Serve, its own local Ray; `conftest.model_server`) under the requests a
public endpoint meets: valid ones, malformed ones, oversized, slow and unframed bodies, and a crowd."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import SERVE_TIMEOUT_S as TIMEOUT_S
from .conftest import SHAPE, small_checkpoint, wait_for


@pytest.fixture
def server(model_server):
    return model_server


def post(url: str, body: bytes, path: str = "/invocations") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read(), parse_constant=_not_strict)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _not_strict(name: str) -> None:
    raise AssertionError(f"the answer holds {name}: not strict JSON")


def raw(port: int, head: bytes, body: bytes = b"", wait: float = 30.0) -> tuple[float, bytes]:
    """Send a hand-made request; the seconds until the first answer bytes, and its status line."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(head + body)
        begun = time.monotonic()
        answer = s.recv(200)
        return time.monotonic() - begun, answer.split(b"\r\n")[0]


def images(n: int = 3, shape=SHAPE) -> list:
    return np.random.default_rng(0).random((n, *shape)).tolist()


def test_it_answers_the_models_probabilities(server):
    url, _, model, _ = server
    code, answer = post(url, json.dumps({"inputs": images()}).encode())
    with torch.inference_mode():
        want = model(torch.tensor(images(), dtype=torch.float32)).numpy()
    assert code == 200
    np.testing.assert_allclose(np.array(answer["predictions"]), want, atol=1e-5)


BAD_REQUESTS = [
    (json.dumps({"inputs": images(2, (1, 9, 8))}).encode(), "expected N×1×8×8 images, got shape 2×1×9×8"),
    (json.dumps({"inputs": images(65)}).encode(), "65 images, at most 64 per request"),
    (json.dumps({"inputs": [[[[1.5] * 8] * 8]]}).encode(), "values must lie in [0, 1]"),
    (json.dumps({"inputs": [[[["a"] * 8] * 8]]}).encode(), "expected numbers"),
    (json.dumps({"inputs": [[[[0.5] * 7 + [None]] * 8]]}).encode(), "expected numbers"),
    (json.dumps({"inputs": [[[[float("nan")] * 8] * 8]]}).encode(), "64 values are not finite"),  # NaN: Python's
    (json.dumps({"images": images()}).encode(), 'expected a JSON object {"inputs": images}'),
    (b"{not json", "the body is not JSON"),
]


@pytest.mark.parametrize("body,fragment", BAD_REQUESTS, ids=[f for _, f in BAD_REQUESTS])  # a body is kilobytes
def test_bad_requests_get_400_naming_what_is_wrong(server, body, fragment):
    code, answer = post(server[0], body)
    assert code == 400 and fragment in answer["message"], answer


def test_a_body_over_the_limit_is_refused_before_it_is_sent(server):
    _, port, _, _ = server
    seconds, status = raw(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large" and seconds < 2


def test_a_body_without_a_length_gets_411(server):
    _, port, _, _ = server
    _, status = raw(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"2\r\n{}\r\n0\r\n\r\n")
    assert status == b"HTTP/1.1 411 Length Required"


def test_slow_requests_time_out_and_hold_nothing(server):
    """Fifty clients announce 1000 bytes and send 2 (one asks to lift the timeout): each gets 408 after the
    timeout, and a proper request sent meanwhile is answered at once."""
    url, port, _, _ = server
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nx-request-timeout-seconds: 0\r\n\r\n"
    with ThreadPoolExecutor(51) as pool:
        slow = [pool.submit(raw, port, head, b"{}") for _ in range(50)]
        time.sleep(0.5)
        begun = time.monotonic()
        assert post(url, json.dumps({"inputs": images()}).encode())[0] == 200
        assert time.monotonic() - begun < TIMEOUT_S
        answers = [f.result() for f in slow]
    assert {status for _, status in answers} == {b"HTTP/1.1 408 Request Timeout"}
    assert max(seconds for seconds, _ in answers) < TIMEOUT_S + 5


def test_other_paths_get_404_and_health_answers(server):
    url = server[0]
    assert post(url, b"{}", path="/predict")[0] == 404
    for path in ("/docs", "/openapi.json"):  # no schema published to whoever asks
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + path, timeout=10)
    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        assert response.status == 200


def test_two_hundred_concurrent_clients_are_all_answered(server):
    url = server[0]
    body = json.dumps({"inputs": images()}).encode()
    with ThreadPoolExecutor(200) as pool:
        codes = list(pool.map(lambda _: post(url, body)[0], range(200)))
    assert codes == [200] * 200


@pytest.mark.parametrize("command", [["export", "--out", "m.onnx"], ["serve", "--port", "0"]])
def test_a_checkpoint_with_a_flipped_byte_is_refused_in_one_line(tmp_path, monkeypatch, command):
    from .test_bad_input import in_process, one_error_line

    folder = tmp_path / "checkpoint"
    small_checkpoint(folder)
    weights = bytearray((folder / "model.pt").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (folder / "model.pt").write_bytes(bytes(weights))
    monkeypatch.chdir(tmp_path)
    code, stderr = in_process([command[0], str(folder), *command[1:]], {}, monkeypatch)
    assert one_error_line(code, stderr, f"{folder}: content does not match its manifest"), stderr
    assert not (tmp_path / "m.onnx").exists()


def replicas(server) -> list[int]:
    """The server's replica processes (Ray titles them `ray::ServeReplica:…`), told apart from any other server's
    on the machine by the session its processes share."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ServeReplica:deepmimic" in (proc / "cmdline").read_bytes() \
                    and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) == server.pid:
                found.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return found


def test_a_replica_killed_under_load_is_replaced_and_every_client_answered_or_told_to_retry(server):
    """32 clients asking back to back; one of the two replicas SIGKILLed: each request gets its answer or a 503
    with Retry-After (never a reset, a hang or a 500: the proxy answered nothing for the requests the dead replica
    held, and uvicorn a bare 500, 7 to 29 of them in runs by hand), and Serve starts a replica in its place."""
    body = json.dumps({"inputs": images()}).encode()
    first = replicas(server)
    assert len(first) == 2
    until = time.monotonic() + 8

    def client() -> list[tuple[int, str | None]]:
        got = []
        while time.monotonic() < until:
            request = urllib.request.Request(server.url + "/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    got.append((response.status, None))
            except urllib.error.HTTPError as e:
                got.append((e.code, e.headers.get("Retry-After")))
        return got

    with ThreadPoolExecutor(32) as pool:
        clients = [pool.submit(client) for _ in range(32)]
        time.sleep(2)
        os.kill(first[0], signal.SIGKILL)
        answers = [a for c in clients for a in c.result()]  # a reset or a timeout would raise here
    assert {status for status, _ in answers} <= {200, 503}, answers
    assert all(after == "1" for status, after in answers if status == 503)
    assert sum(status == 200 for status, _ in answers) > 10
    wait_for(lambda: len(replicas(server)) == 2 and first[0] not in replicas(server), "a replica in its place", 120)
    assert post(server.url, body)[0] == 200
