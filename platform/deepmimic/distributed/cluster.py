"""Connecting to Ray (the cluster in RAY_ADDRESS, or a local one), and how many trials fit it."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import stopping
from ..config import SweepConfig
from ..errors import UserError

# Ray kills a worker idle for a second where a node runs more workers than CPUs, as a sweep's trials make it: a
# query round's scoring tasks (`selector_view.py`), a selector's training apart, then paid a new worker's imports
# every round (benchmarks/RESULTS.md). `ray start` takes it from RAY_idle_worker_killing_time_threshold_ms (clusters/).
SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 120_000}


def connect(dashboard: bool = True) -> None:
    """Join the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a local Ray, with Ray's
    dashboard (its UI, job server and state API) unless `dashboard` is false: a caller that uses none of them
    is spared its dozen processes, which poll for as long as the Ray lives."""
    if ray.is_initialized():
        return
    # ray.init replaces SIGTERM's handler with sys.exit: the caller's (the CLI's clean stop) is put back.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:  # nothing there, or a cluster that wants a token we lack
            cause = str(e.__cause__ or e).splitlines()[0][:200]
            raise UserError(f"RAY_ADDRESS {address}: cannot connect ({cause})") from None
    else:
        # "local": never join whatever cluster an earlier `ray start` left recorded in /tmp/ray.
        ray.init(address="local", include_dashboard=dashboard, _system_config=SYSTEM_CONFIG, **quiet)
    no_progress_bars()
    stopping.at_end(mute_worker_output)
    if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # a `ray job submit` driver: nodes may be set up otherwise
        check_versions()


def mute_worker_output() -> None:
    """This driver stops printing its workers' output. Its end (a stop, or `ray.shutdown` at exit) kills the
    trials, and what they print as they die (a SIGTERM's traceback) would follow the command's last line; each
    trial's own log keeps it."""
    # Ray has no public switch for log_to_driver once it is connected: its handler is removed by name.
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")


def no_progress_bars() -> None:
    """Ray Data's progress bars off in this process (a bar an operator, every dataset: a sweep reports its own
    progress), and the warning line Ray Data logs to say so."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def versions() -> dict[str, str]:
    """What must agree between the driver and every node: Ray, PyTorch and torchvision (without their build
    tags: read from their installed metadata, torchvision not imported) and this project."""
    from importlib.metadata import PackageNotFoundError, version

    import deepmimic

    def installed(name: str) -> str:
        try:
            return version(name).split("+")[0]
        except PackageNotFoundError:
            return "none"

    return {"Ray": ray.__version__, "PyTorch": installed("torch"), "torchvision": installed("torchvision"),
            "deepmimic": deepmimic.__version__}


def check_versions(here: dict[str, str] | None = None, timeout_s: float = 300.0) -> None:
    """Ask every live node, in a task of no CPUs pinned to it (in the job's runtime environment, so the project
    as shipped with the job), for its `versions()`; one line naming the first node that differs from the driver
    (`here`, default its own) or cannot import the project. Ray itself refuses a driver of another Ray version
    when it connects."""
    here = here or versions()
    asked = {f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})": ray.remote(versions).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in ray.nodes() if node["Alive"]}  # by id: nodes of one machine share its address
    for address, answer in asked.items():
        try:
            there = ray.get(answer, timeout=timeout_s)
        except ray.exceptions.RayError as e:
            cause = str(getattr(e, "cause", None) or e).strip().splitlines()[-1][:200]
            raise UserError(f"node {address}: cannot run the project ({cause}): submit with --runtime-env "
                            "clusters/runtime_env.yaml, or start the cluster from the project's image") from None
        for what, version in here.items():
            if there[what] != version:
                raise UserError(f"node {address}: {what} {there[what]}, but the driver has {version}: run one "
                                "version everywhere (clusters/runtime_env.yaml or the project's image)")
    print(f"cluster: {len(asked)} node(s), each with " + ", ".join(f"{k} {v}" for k, v in here.items()), flush=True)


def run_config(name: str, storage: str, retries: int) -> Any:
    """A Tune experiment's run config: its folder and its retries, and none of Tune's per-trial loggers (the
    driver wrote TensorBoard events, CSV and JSON files for every trial, work a many-trial sweep paid per
    trial: benchmarks/RESULTS.md). What each trial reported last, as Tune records it (its process, node and
    seconds among it), is written once a stage instead (`sweep._tune`)."""
    from ray import tune

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # read by the Tuner, in this process
    # Without those loggers no trial has the progress file Tune's result grid reads its metrics from, and it would
    # warn once per trial; the metrics used are each trial's last report, which it keeps in memory.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    return tune.RunConfig(name=name, storage_path=storage, verbose=1,
                          failure_config=tune.FailureConfig(max_failures=retries))


def raise_failures(results: Any, name: str) -> None:
    """Stop if any trial of a Tune stage's `results` failed: a user's mistake met in a trial as its one line,
    anything else naming the first failure."""
    failed = [r for r in results if r.error]
    if failed:
        err = failed[0].error
        cause = getattr(err, "cause", None) or err
        if isinstance(cause, UserError):
            raise cause
        raise RuntimeError(f"{len(failed)} {name} trial(s) failed; first: {err}")


def trial_resources(base: SweepConfig, role: str = "student") -> dict[str, float]:
    """What a `role`'s trial process holds: a single worker's resources, since such a run trains
    in that process; else `trial_cpus`, beside the worker group the trial starts."""
    resources = base.resources.of(role)
    if resources.num_workers > 1:
        return {"CPU": base.trial_cpus}
    return {k: v for k, v in resources.per_worker().items() if v}


def concurrency(base: SweepConfig, cluster: dict[str, float], data_cpus: float = 0.0, role: str = "student") -> int:
    """How many trials fit the cluster at once, each with its own process and its training workers.

    A trial with a worker group reserves only `trial_cpus`; its Ray Train workers
    ask for theirs later, so without this bound trials could hold every CPU while
    their workers wait forever. A resource the cluster lacks today (GPUs on an
    autoscaling cluster at zero workers) sets no bound: the autoscaler adds it.
    """
    resources = base.resources.of(role)
    workers = resources.num_workers
    need = {k: workers * v for k, v in resources.per_worker().items()}
    if workers > 1:
        need["CPU"] += base.trial_cpus
    need["CPU"] += data_cpus
    fits = [int(cluster[k] // v) for k, v in need.items() if v > 0 and cluster.get(k, 0) > 0]
    return max(1, min(fits)) if fits else 1
