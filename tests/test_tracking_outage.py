"""A tracking server (a real `mlflow server` over HTTP) killed with SIGKILL mid-sweep: started again on its port
and store while the student trains, every epoch reaches it once; never back, the sweep's own results are complete,
one line says which runs are untracked, and the same command once it answers sends them without training.

Each sweep runs with MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, so a call finds the server gone at once: the tracker's
handling is the same as after MLflow's retries, which would make the test wait about a minute a call
(benchmarks/tracking_outage.py measures the default against a 30 s outage)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import time
from typing import Callable, Iterator, NamedTuple

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from .conftest import DEEPMIMIC, free_port, mlflow_process, trial_pids, wait_for

# Seconds the student trains, at this CPU's fastest pace. The test holds the sweep's trial processes stopped
# except for short steps until the server shows the student's first epochs (`Held.stepped`), so the student has
# trained a few tenths of a second then, however late the tracker and the server show it on a loaded machine; it
# trains on for 0.5 s of the outage (its first epoch there a call to the tracker, a second after the last), and must
# still have epochs left when the server is back. A sweep beside it (pytest-xdist's other worker) can make the pace
# measured slower than the student's own: in one CI run, let train 1.5 s of the outage, the student ended then.
SECONDS = {"back": 6.0, "gone": 4.0}
MENTOR_EPOCHS = 3
STUDENT, BATCH = {"name": "S", "architecture": "c-fc", "width": 4}, 64  # the sweeps' and the pace's


@pytest.fixture(scope="module")
def epochs(digits) -> dict[str, int]:
    """The student's epochs for each sweep, from this CPU's pace at the sweep's student (its architecture, batch
    and one thread) on digits: a fixed count finished before the server was back on a slower CPU."""
    from deepmimic.core.architectures import ModelSpec, channel_stats
    from deepmimic.core.training import Training, train

    images, labels = torch.from_numpy(digits.train.images), torch.from_numpy(digits.train.labels)
    net = ModelSpec(STUDENT["architecture"], width=STUDENT["width"]).build(
        tuple(images.shape[1:]), 10, *channel_stats(digits.train.images))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(net, images, labels, Training(epochs=2, batch_size=BATCH))  # the first steps pay one-off costs
        rounds = []
        for _ in range(3):  # the fastest: the CPU's pace with the least of whatever else runs beside the test
            began = time.perf_counter()
            train(net, images, labels, Training(epochs=8, batch_size=BATCH))
            rounds.append((time.perf_counter() - began) / 8)
        per_epoch = min(rounds)
    finally:
        torch.set_num_threads(threads)
    return {name: min(10_000, max(50, round(s / per_epoch))) for name, s in SECONDS.items()}


def space(name: str, epochs: int) -> dict:
    return {"name": name, "dataset": {"name": "digits"}, "training": {"epochs": epochs, "batch_size": BATCH},
            "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 8, "training": {"epochs": MENTOR_EPOCHS}},
            "students": [STUDENT],
            "resources": {"cpus_per_worker": 1, "threads_per_worker": 1},
            "fault_tolerance": {"checkpoint_every": 0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A store, a port, and the arguments of an `mlflow server` over them (one worker: what the store holds is
    what one process wrote)."""
    tmp = tmp_path_factory.mktemp("outage")
    args = ["server", "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp / 'store.db'}",
            "--artifacts-destination", str(tmp / "artifacts")]
    return tmp, args, free_port()


def start(server, ray_address: str, name: str, epochs: int) -> tuple[subprocess.Popen, str]:
    tmp, _, port = server
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space(name, epochs)))
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAY_ADDRESS": ray_address, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with open(tmp / f"{name}.out", "a") as out, open(tmp / f"{name}.err", "a") as err:  # a rerun appends
        proc = subprocess.Popen([*DEEPMIMIC, "sweep", str(path), "--out", str(tmp / name), "--cache",
                                 str(tmp / "cache")], env=env, stdout=out, stderr=err)
    return proc, uri


def epochs_on_server(proc: subprocess.Popen, uri: str, experiment: str) -> dict[str, int]:
    """Epochs the server holds of each of the sweep's runs, by name; the sweep must still run."""
    assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before the server was killed"
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    return {r.info.run_name: len(client.get_metric_history(r.info.run_id, "epoch_train_loss")) for r in runs}


class Held:
    """The sweep's trial processes (those of the session's Ray: this module's tests run one at a time), stopped
    (SIGSTOP) but where the test lets them run. Its mentor and student usually train in one; one started later (a
    slot's second, on a loaded machine) is stopped as soon as it is seen."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def stop(self) -> None:
        self.pids |= set(trial_pids())
        self._send(signal.SIGSTOP)

    def run_for(self, seconds: float) -> None:
        """Lets them run `seconds`, then stops them (and any new one) again."""
        self._send(signal.SIGCONT)
        time.sleep(seconds)
        self.stop()

    def stepped(self, seen: Callable[[], dict[str, int]], step: float = 0.1, settle: float = 2.0,
                timeout: float = 300) -> None:
        """Lets them run `step` seconds at a time until `seen()` (each run's epochs on the server) shows the
        student's first. Once the mentor's epochs are all there, each step is followed by up to `settle` seconds
        held, until the server shows more: what the trial does reaches the server through the tracker, which is busy
        with the mentor's model then, and late on a loaded machine; the student must not train on meanwhile."""
        deadline = time.monotonic() + timeout
        now = seen()
        while not now.get("S"):
            assert time.monotonic() < deadline, "the trials did not get there"
            self.run_for(step)
            before, settled = now, time.monotonic() + settle
            now = seen()
            while now == before and before.get("Mentor") == MENTOR_EPOCHS and time.monotonic() < settled:
                time.sleep(0.2)
                now = seen()

    def release(self) -> None:
        self._send(signal.SIGCONT)

    def _send(self, signum: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """The sweep's trial processes held (`Held`) once the first is there, and let go however the block ends."""
    trials = Held()
    try:
        wait_for(trial_pids, "the trial's process", 300)
        trials.stop()
        yield trials
    finally:
        trials.release()


def every_epoch_once(uri: str, experiment: str) -> dict[str, list[int]]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {r.info.run_name: [m.step for m in client.get_metric_history(r.info.run_id, "epoch_train_loss")]
            for r in runs}


class Back(NamedTuple):
    epochs: dict[str, list[int]]  # each run's logged epochs
    down: float                    # when the server went down
    up: float                      # when it was back
    direct: list[int]              # the epochs this process's own tracker logged across the outage


@pytest.fixture(scope="module")
def back(server, ray_address, epochs):
    """A sweep whose server is killed once its student has logged epochs, and started again 2.5 s later; beside
    it, a tracker in this process sends an epoch before the outage, two during it and one after. The student trains
    on for 0.5 s of the outage; its trial processes are stopped (SIGSTOP) before the outage and after those 0.5 s,
    until the server answers again, so it is still training when the server is back on any machine, however slowly
    the server starts there and however late it showed the student's first epochs."""
    from deepmimic.core.results import Epoch
    from deepmimic.run_names import RunLabel
    from deepmimic.tracking import Tracker

    tmp, args, port = server
    label = RunLabel("student:S", "student", "S", {}, {})
    with pytest.MonkeyPatch.context() as env, contextlib.ExitStack() as hold:
        env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # this process's tracker as the sweep's
        with mlflow_process(args, "/health", port=port, stop=signal.SIGKILL):
            proc, uri = start(server, ray_address, "back", epochs["back"])
            direct = Tracker(uri, "direct", str(tmp / "direct"))
            direct.started(label, 1_000_000)
            direct.epochs(label.key, [Epoch(1, 1.0, ended_ms=1_001_000)])
            trials = hold.enter_context(held())
            trials.stepped(lambda: epochs_on_server(proc, uri, "back"))
        down = time.time()
        direct.epochs(label.key, [Epoch(e, 1.0, ended_ms=1_000_000 + 1000 * e) for e in (2, 3)])
        assert direct.down_at is not None  # the call found the server gone
        time.sleep(1.0)  # the student's next epoch goes to the tracker at once (`progress.EPOCHS_EVERY_S`)
        trials.run_for(0.5)
        time.sleep(1.0)
        with mlflow_process(args, "/health", port=port):  # stopped before the next test starts one on its port
            up = time.time()
            trials.release()
            direct.try_again()
            direct.epochs(label.key, [Epoch(4, 1.0, ended_ms=1_004_000)])
            run = direct.runs[label.key]
            logged = [m.step for m in MlflowClient(uri).get_metric_history(run, "epoch_train_loss")]
            assert proc.wait(timeout=300) == 0, (tmp / "back.err").read_text()[-3000:]
            return Back(every_epoch_once(uri, "back"), down, up, logged)


def test_a_server_back_mid_sweep_holds_every_epoch_once(back, epochs):
    assert back.epochs == {"back": [], "Mentor": [1, 2, 3], "S": list(range(1, epochs["back"] + 1))}


def test_epochs_sent_while_the_server_was_down_reach_it_once_it_is_back(back):
    """A run still training when its server returns: the epochs of the calls the server missed are logged with the
    next call, not left as a gap that the final logging (which skips steps at or before the store's last) keeps."""
    assert back.direct == [1, 2, 3, 4]


def epoch_ends(server) -> list[float]:
    """When each of the server-back sweep's student epochs ended (seconds since the epoch), from its trial record."""
    (trial,) = (server[0] / "back" / "trials").glob("*/trial.json")
    return [e["ended_ms"] / 1000 for e in json.loads(trial.read_text())["student"]["history"]]


def test_training_went_on_while_the_server_was_down(back, server):
    ended = epoch_ends(server)
    assert any(back.down < t < back.up for t in ended), (back.down, back.up, ended[0], ended[-1])


def test_the_student_still_trained_once_the_server_was_back(back, server):
    ended = epoch_ends(server)
    assert ended[-1] > back.up, (back.up, ended[-1])  # so its last epochs were sent to the server come back


def test_a_server_gone_for_good_ends_in_one_line_and_the_same_command_sends_the_runs(server, ray_address, epochs):
    tmp, args, port = server
    with contextlib.ExitStack() as hold:  # the trials let go once the server is gone
        with mlflow_process(args, "/health", port=port, stop=signal.SIGKILL):
            proc, uri = start(server, ray_address, "gone", epochs["gone"])
            hold.enter_context(held()).stepped(lambda: epochs_on_server(proc, uri, "gone"))
    assert proc.wait(timeout=300) == 2
    err = (tmp / "gone.err").read_text()
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert "not answering" in line and "(Mentor, S)" in line and "run the same command" in line, line
    with open(tmp / "gone" / "results.csv") as f:
        assert [r["student"] for r in csv.DictReader(f)] == ["S"]  # the sweep's own results: complete

    with mlflow_process(args, "/health", port=port):
        again, _ = start(server, ray_address, "gone", epochs["gone"])
        assert again.wait(timeout=300) == 0, (tmp / "gone.err").read_text()[-3000:]
        counts = json.loads((tmp / "gone" / "sweep.json").read_text())["counts"]
        assert counts["trials_run"] == 0 and counts["mentors_trained"] == 0  # sent, not trained again
        every = list(range(1, epochs["gone"] + 1))
        assert every_epoch_once(uri, "gone") == {"gone": [], "Mentor": [1, 2, 3], "S": every}

