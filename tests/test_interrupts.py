"""Ctrl-C and SIGTERM through real `deepmimic` processes, each starting its own local Ray as a user's would:
finished work is kept, the command says how to resume, exits 130 or 143, and leaves no Ray process behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from deepmimic.stopping import MESSAGE as INTERRUPTED

from .conftest import DEEPMIMIC, wait_for

SPACE = {
    "name": "stop", "dataset": {"name": "digits"}, "training": {"epochs": 2, "batch_size": 64},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8},
    "students": [{"name": f"S{w}", "architecture": "c-fc", "width": w} for w in (2, 3, 4, 5)],
    "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
    "fault_tolerance": {"checkpoint_every": 0},
    "tracking": {"models": "none"},  # no claim here reads figures or models
    "grid": {"student": ["S2", "S3", "S4", "S5"]},
}


def start(tmp: Path, command: str, space: dict, *extra: str, ray_address: str | None = None
          ) -> tuple[subprocess.Popen, Path]:
    """The CLI in a session of its own, without RAY_ADDRESS: it starts (and must stop) its own Ray (or joins
    `ray_address`)."""
    path = tmp / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    log = tmp / f"{command}.log"
    with open(log, "w") as out, open(tmp / f"{command}.err", "w") as err:
        proc = subprocess.Popen([*DEEPMIMIC, command, str(path), "--out", str(tmp / "out"), *extra], env=env,
                                stdout=out, stderr=err, start_new_session=True)
    return proc, tmp / f"{command}.err"


def stopped(proc: subprocess.Popen, signals: list[int], gap: float = 0.0) -> tuple[int, float]:
    """Send `signals` (`gap` seconds apart); the exit code and the seconds from the first signal to the exit."""
    begun = time.monotonic()
    for i, signum in enumerate(signals):
        if i:
            time.sleep(gap)
        proc.send_signal(signum)
    code = proc.wait(timeout=60)
    return code, time.monotonic() - begun


def left_in_session(sid: int) -> list[str]:
    """Processes still in the command's session (Ray's raylet, GCS, dashboard and workers all start there)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # session id: the 6th field, the 4th after the command name
            left.append(stat.parent.name)
    return left


def one_line(err: Path) -> str:
    text = err.read_text()
    assert "Traceback" not in text, text[-3000:]
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A sweep stopped by Ctrl-C once its first student trial has finished."""
    tmp = tmp_path_factory.mktemp("sigint")
    proc, err = start(tmp, "sweep", SPACE, "--cache", str(tmp / "cache"))
    wait_for(lambda: list((tmp / "out").glob("trials/*/trial.json")), "a finished trial", 300)
    code, seconds = stopped(proc, [signal.SIGINT])
    return tmp, proc, err, code, seconds


def test_ctrl_c_stops_a_sweep_within_15_s_with_one_line_and_exit_130(interrupted):
    _, proc, err, code, seconds = interrupted
    assert code == 130 and seconds < 15, (code, seconds)
    assert one_line(err) == INTERRUPTED
    wait_for(lambda: not left_in_session(proc.pid), "Ray's processes to end", 10)


def test_ctrl_c_keeps_the_finished_trials_in_a_partial_report(interrupted):
    tmp = interrupted[0]
    finished = len(list((tmp / "out").glob("trials/*/trial.json")))
    with open(tmp / "out" / "results.csv") as f:
        reported = len(list(csv.DictReader(f)))
    # A trial may still write its record while Ray stops it, after the report: never the other way round.
    assert 1 <= reported <= finished, (reported, finished)
    report = (tmp / "out" / "report.md").read_text()
    assert f"**Partial**: interrupted with {reported} of 4 student trials finished" in report


def test_the_rerun_finishes_without_retraining_what_finished(interrupted, ray_local):
    tmp = interrupted[0]
    finished = len(list((tmp / "out").glob("trials/*/trial.json")))
    # On the session's Ray: this tests resuming, not stopping (a Ray of its own costs 5-7 s to start and stop).
    proc, err = start(tmp, "sweep", SPACE, "--cache", str(tmp / "cache"),
                      ray_address=ray_local.get_runtime_context().gcs_address)
    assert proc.wait(timeout=600) == 0, err.read_text()[-3000:]
    counts = json.loads((tmp / "out" / "sweep.json").read_text())["counts"]
    assert counts["mentors_trained"] == 0 and counts["trials_reused"] == finished
    assert counts["trials_run"] == 4 - finished
    assert "Partial" not in (tmp / "out" / "report.md").read_text()


def test_sigterm_stops_a_run_with_exit_143(tmp_path):
    space = {k: v for k, v in SPACE.items() if k not in ("grid", "tracking")}  # a sweep's keys: `run` refuses them
    space |= {"training": {"epochs": 200, "batch_size": 64}}
    proc, err = start(tmp_path, "run", space)
    wait_for(lambda: list((tmp_path / "out").glob("mentors/*/data/test.parquet")), "the mentor stage", 300)
    code, seconds = stopped(proc, [signal.SIGTERM])
    assert code == 143 and seconds < 15, (code, seconds)
    assert one_line(err) == INTERRUPTED
    assert not (tmp_path / "out" / "result.json").exists()  # nothing that looks complete
    wait_for(lambda: not left_in_session(proc.pid), "Ray's processes to end", 10)


def test_a_second_ctrl_c_while_stopping_exits_at_once(tmp_path):
    proc, err = start(tmp_path, "sweep", SPACE, "--cache", str(tmp_path / "cache"))
    wait_for(lambda: list((tmp_path / "cache").glob("mentors/*/data/test.parquet")), "the mentor stage", 300)
    code, seconds = stopped(proc, [signal.SIGINT, signal.SIGINT], gap=0.3)
    assert code == 130 and seconds < 3, (code, seconds)  # one Ctrl-C at this point: 4.6 s here, two 1.2 s
    assert one_line(err) == INTERRUPTED
    wait_for(lambda: not left_in_session(proc.pid), "Ray's processes to end", 10)  # killed, not waited for
