"""Sweeps sharing a mentor cache make each mentor once: the second waits for the first and reuses its
mentor, and a holder that is killed does not leave its mentor held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from deepmimic.config import SweepConfig, parse_experiment
from deepmimic.distributed.keys import mentor_key, student_key
from deepmimic.distributed.mentor_folder import MentorFolder

from .conftest import DEEPMIMIC, wait_for


def space(name: str, epochs: int) -> dict:
    return {"name": name, "dataset": {"name": "digits"}, "training": {"epochs": 2, "batch_size": 64},
            "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8, "training": {"epochs": epochs}},
            "students": [{"name": "S", "architecture": "c-fc", "width": 4}],
            "resources": {"cpus_per_worker": 1, "threads_per_worker": 1}, "fault_tolerance": {"checkpoint_every": 0},
            "tracking": {"models": "none"}}  # no claim here reads figures or models


@pytest.mark.parametrize("setting", [{"eval_every": 1}, {"cuda_graph": False}, {"lr": 0.01}])
def test_how_a_run_is_scored_or_launched_leaves_its_cache_keys_as_they_were(setting):
    def keys(spec: dict) -> tuple[str, str]:
        cfg = parse_experiment(spec, "keys", SweepConfig)
        return mentor_key(cfg), student_key(cfg, cfg.students[0])

    changed = space("keys", epochs=3)
    changed["training"] |= setting
    same = keys(changed) == keys(space("keys", epochs=3))
    assert same == ("lr" not in setting)  # what is learned does change them


def start(tmp: Path, spec: dict, address: str) -> tuple[subprocess.Popen, Path]:
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    log = tmp / f"{spec['name']}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*DEEPMIMIC, "sweep", str(path), "--out", str(tmp / spec["name"]),
                                 "--cache", str(tmp / "cache")], env={**os.environ, "RAY_ADDRESS": address},
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def counts(tmp: Path, name: str) -> dict:
    return json.loads((tmp / name / "sweep.json").read_text())["counts"]


def hold(tmp: Path, spec: dict) -> subprocess.Popen:
    """A process holding the lock of `spec`'s mentor in `tmp`'s cache, as a sweep making it would, until a line on
    its stdin (or killed)."""
    lock = MentorFolder.at(str(tmp / "cache"), mentor_key(parse_experiment(spec, spec["name"], SweepConfig))).lock
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from deepmimic.core import artifacts
        with artifacts.exclusive({lock!r}, "the test's mentor"):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_two_sweeps_waiting_together_train_their_mentor_once(tmp_path, ray_address):
    # Both reach the mentor's lock while the test holds it, then race for it: their overlap is made, not left to
    # their start-up times (on a fast machine one made the mentor before the other asked for it).
    specs = [space(name, epochs=30) for name in ("first", "second")]
    holder = hold(tmp_path, specs[0])
    try:
        runs = [start(tmp_path, spec, ray_address) for spec in specs]
        wait_for(lambda: all("waiting for mentor" in log.read_text() for _, log in runs), "both to wait", 300)
    finally:
        holder.communicate("\n", timeout=30)  # released, not killed
    for proc, log in runs:
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert len(list((tmp_path / "cache").glob("mentors/*/ray/mentor-*"))) == 1
    assert sorted(counts(tmp_path, n)["mentors_trained"] for n in ("first", "second")) == [0, 1]
    (built,) = (tmp_path / "cache").glob("mentors/*/student_sets/*/set.json")
    assert len([p for p in built.parent.iterdir() if p.is_dir()]) == 1  # built once: no orphaned copy


def test_a_killed_holder_leaves_the_mentor_to_the_waiting_sweep(tmp_path, ray_address):
    spec = space("waiter", epochs=3)
    holder = hold(tmp_path, spec)
    proc, log = start(tmp_path, spec, ray_address)
    wait_for(lambda: "waiting for mentor" in log.read_text(), "the sweep to wait for the held mentor", 300)
    holder.kill()  # SIGKILL: no clean release
    holder.wait()
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert counts(tmp_path, "waiter")["mentors_trained"] == 1
