"""`deepmimic serve` under load: Debian's `wrk` (C, two threads) keeping 200 connections busy on loopback for a
minute against 2 replicas, then the same with one replica killed (SIGKILL) a third of the way in. Prints
throughput, p50/p99 latency, the statuses answered (a 503 must carry Retry-After), the socket errors (a reset or
a hang would show there) and what the client itself cost in CPU seconds, since it shares the 2 cores.

    .venv/bin/python benchmarks/serve_load.py            # needs wrk: apt-get install wrk
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine
from deepmimic.core import checkpoints
from deepmimic.core.architectures import ModelSpec
from deepmimic.core.optimizer import SGD

# Counts each status (and 503s without Retry-After) per wrk thread; sums them at the end.
LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; bare503 = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["Retry-After"] == nil and headers["retry-after"] == nil then bare503 = bare503 + 1 end
end
function done(summary, latency, requests)
  local all, bare = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
    bare = bare + t:get("bare503")
  end
  local e = summary.errors
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d": %d', k, v)) end
  io.write(string.format('RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"bare503": %d, "statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000, bare,
    table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = BODY
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint(folder: Path) -> None:
    torch.manual_seed(0)
    net = ModelSpec("c-mp-fc", width=4).build((1, 8, 8), 10, [80.0], [60.0])
    meta = {"spec": {"architecture": "c-mp-fc", "width": 4}, "shape": [1, 8, 8], "num_classes": 10,
            "mean": [80.0], "std": [60.0]}
    folder.mkdir()
    checkpoints.save(str(folder), net, SGD(net.parameters(), lr=0.1), 1, [], meta)


def replicas() -> list[int]:
    """The pids of Serve's replica processes (Ray titles them `ray::ServeReplica:…`)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ServeReplica:deepmimic" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def load(url: str, script: Path, seconds: int, connections: int, kill_at: float | None) -> dict:
    """One wrk run; with `kill_at`, one replica SIGKILLed that many seconds in."""
    wrk = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
                            url], stdout=subprocess.PIPE, text=True)
    killed = None
    if kill_at is not None:
        time.sleep(kill_at)
        killed = replicas()[0]
        os.kill(killed, signal.SIGKILL)
    spent = 0.0
    while wrk.poll() is None:  # the client's CPU, read while it lives
        try:
            spent = cpu_seconds(wrk.pid)
        except OSError:
            break
        time.sleep(0.5)
    out = wrk.stdout.read()
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    return {**result, "client_cpu_s": spent, "killed": killed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--images", type=int, default=4, help="images per request")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("serve_load: needs wrk (apt-get install wrk)")
    print(machine(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint(Path(tmp) / "checkpoint")
        body = json.dumps({"inputs": np.random.default_rng(0).random((args.images, 1, 8, 8)).round(4).tolist()})
        script = Path(tmp) / "load.lua"
        script.write_text(LUA.replace("BODY", json.dumps(body)))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        log = open(Path(tmp) / "serve.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "deepmimic.cli", "serve", str(Path(tmp) / "checkpoint"),
                                   "--port", str(port), "--replicas", str(args.replicas)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while "serving on" not in (Path(tmp) / "serve.log").read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("serve_load: the server did not start:\n" + (Path(tmp) / "serve.log").read_text()[-2000:])
                time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/invocations"
            print(f"{args.replicas} replicas, {args.connections} connections, {args.seconds} s, "
                  f"{args.images} images a request, wrk -t2")
            steady = load(url, script, args.seconds, args.connections, None)
            faulty = load(url, script, args.seconds, args.connections, args.seconds / 3)
            back = wait_for_replicas(args.replicas, 120)
        finally:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=60)
    print("| run | requests/s | p50 ms | p99 ms | statuses | 503 without Retry-After | socket errors | client CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in (("steady", steady), (f"one replica killed at {args.seconds / 3:.0f} s", faulty)):
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items() if v) or "none"
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        print(f"| {name} | {r['requests'] / r['seconds']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {statuses} | "
              f"{r['bare503']} | {errors} | {r['client_cpu_s']:.1f} |")
    print(f"replicas running again after the kill: {back}")


def wait_for_replicas(n: int, timeout: float) -> int:
    """How many replica processes run once Serve has had `timeout` seconds to replace a killed one."""
    deadline = time.monotonic() + timeout
    while len(replicas()) < n and time.monotonic() < deadline:
        time.sleep(1)
    return len(replicas())


if __name__ == "__main__":
    main()
