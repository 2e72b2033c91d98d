"""The `deepmimic` command."""

from __future__ import annotations

import argparse
import atexit
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Sequence

from . import stopping
from .errors import UserError, interruption

if TYPE_CHECKING:
    from .core.results import ExperimentResult


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message}")


def format_result(result: ExperimentResult) -> str:
    """The result of one experiment as a text table."""
    from .core.results import StudentResult

    head = (f"{'model':<12} {'architecture':<28} {'params':>9} {'accuracy':>9} {'loss':>7} {'relative':>9} "
            f"{'agreement':>9} {'infer s':>8}")
    sizes = result.sizes
    rows = [f"{result.dataset}: mentor {sizes.mentor} labelled, student pool {sizes.student} unlabelled, "
            f"test {sizes.test}", head]
    for m in [result.mentor, *result.students]:
        relative, agreement = (m.relative_accuracy, m.agreement) if isinstance(m, StudentResult) else (None, None)
        rel = f"{relative:>9.4f}" if relative is not None else f"{'-':>9}"
        agr = f"{agreement:>9.4f}" if agreement is not None else f"{'-':>9}"
        rows.append(f"{m.name:<12} {m.architecture:<28} {m.params or '-':>9} {m.test_accuracy:>9.4f} "
                    f"{m.test_loss:>7.4f} {rel} {agr} {m.inference_time_s:>8.4f}")
    rows.append("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings_s.items()))
    return "\n".join(rows)


def _check_data(configs: list[Any]) -> None:
    """Every data set the configs name, checked in the driver before any Ray work: read (its labelled part;
    a registered cheap check instead where there is one), models checked against its images, a separate
    pool listed (its files are decoded later, each named if broken, before any student trains); every black
    box's file there, its endpoint listening."""
    from .config import check_architectures
    from .core.black_box import check_listening
    from .core.datasets import check_dataset
    from .core.datasets.pool import list_pool

    checked: dict[Any, tuple[tuple[int, int, int], int]] = {}  # source: its images' shape, classes
    listed = set()
    for c in configs:
        sources = [c.source()] + ([c.ood.dataset.source()] if c.ood and c.ood.dataset else [])
        for src in sources:
            if src not in checked:
                checked[src] = check_dataset(src)
        check_architectures(c, *checked[sources[0]])
        if sources[0].unlabeled and sources[0] not in listed:
            list_pool(sources[0])
            listed.add(sources[0])
    for c in configs:
        for box in c.mentor.black_boxes():
            if box.kind == "http":
                check_listening(box.location, box.timeout_s)
            elif not os.path.isfile(box.location):
                raise UserError(f"mentor black_box.location {box.location}: no such file")


def _example_data(args: argparse.Namespace) -> None:
    from .core.datasets.example import write_example

    counts = write_example(args.folder)
    print(f"wrote {args.folder}: train/ {counts['train']} labelled images in 10 class folders, "
          f"test/ {counts['test']}, unlabeled/ {counts['unlabeled']} without a class")


def _run(args: argparse.Namespace) -> None:
    from .config import load_experiment

    cfg = load_experiment(args.experiment, args.set)
    _check_data([cfg])
    out = _local_or_uri(args.out or os.path.join("runs", cfg.name))
    _check_writable(out=out)
    if args.check:
        print(f"{args.experiment}: valid; its data and --out checked (nothing run)")
        return
    from .distributed.cluster import connect
    from .distributed.experiment import run_experiment

    connect()
    print(format_result(run_experiment(cfg, out)))
    print(f"wrote {os.path.join(out, 'result.json')}")


def _sweep(args: argparse.Namespace) -> None:
    from .config import load_sweep

    base, points = load_sweep(args.search_space, args.set)
    _check_data([cfg for _, cfg in points])
    storage = _local_or_uri(args.storage or "runs")
    out = _local_or_uri(args.out or f"{storage}/{base.name}")
    cache = _local_or_uri(args.cache or os.environ.get("DEEPMIMIC_CACHE") or f"{storage}/cache")
    _check_writable(storage=storage, out=out, cache=cache)
    if args.check:
        print(f"{args.search_space}: valid; {len(points)} grid point(s), their data and output folders checked "
              "(nothing run)")
        return
    from .distributed.sweep import sweep

    outcome = sweep(base, points, out, cache)
    print(outcome.report)
    c = outcome.counts
    print(f"mentors: {c.mentors} ({c.mentors_trained} trained, {c.mentors_reused} reused); "
          f"student trials: {c.trials} ({c.trials_run} run, {c.trials_reused} already done)"
          + (f"; damaged cached artifacts rebuilt: {c.rebuilt}" if c.rebuilt else ""))
    print("driver stage times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in outcome.timings_s.items()))
    print(f"results: {out}/results.csv, {out}/report.md")
    # MLflow 3.17's UI shows an experiment in its GenAI view unless the URL (or the browser's last choice) asks
    # for the model-training one: the experiment's `mlflow.experimentKind` tag alone no longer decides.
    view = f"#/experiments/{outcome.experiment_id}/runs?workflowType=machine_learning"
    if outcome.tracking_uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {outcome.tracking_uri}")
        print(f"   then open http://127.0.0.1:5000/{view}")
    else:
        print(f"tracked at {outcome.tracking_uri}: {outcome.tracking_uri.rstrip('/')}/{view}")


def _check_writable(**roots: str) -> None:
    """Every output root a folder we may write in, checked before Ray starts or anything is written."""
    from .core.artifacts import check_writable_folder

    for flag, root in roots.items():
        check_writable_folder(root, f"--{flag}")


def _local_or_uri(path: str) -> str:
    """Absolute local paths (every process agrees on them); URIs (s3://, gs://, …) as given."""
    from .core.artifacts import is_uri

    return path.rstrip("/") if is_uri(path) else os.path.abspath(path)


def _load_checkpoint(folder: str) -> tuple[Any, tuple[int, int, int]]:
    from .core import artifacts, checkpoints

    try:
        return checkpoints.load_model(folder), tuple(checkpoints.model_meta(folder)["shape"])
    except artifacts.TornArtifact as e:
        raise UserError(f"{e} (expected a mentor's checkpoint folder: its result's `checkpoint`)") from None


def _export(args: argparse.Namespace) -> None:
    from .core.serving import export

    model, shape = _load_checkpoint(args.checkpoint)
    export(model, shape, args.format, args.out)
    dims = "×".join(map(str, shape))
    print(f"wrote {args.out}: {args.format}, float images in [0, 1] of shape N×{dims} → probabilities")


def _serve(args: argparse.Namespace) -> None:
    _, shape = _load_checkpoint(args.checkpoint)
    with socket.socket() as probe:  # one line now, rather than a Serve proxy failing to start later
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy's server binds
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise UserError(f"--port {args.port}: cannot listen on {args.host} ({e.strerror})") from None
    from .distributed import serving

    limits = serving.Limits(max_images=args.max_images, request_timeout_s=args.timeout)
    # Read by Serve's proxy process, which Ray starts with this environment.
    os.environ[serving.BODY_LIMIT_ENV] = str(limits.body_bytes(shape))
    os.environ["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = "deepmimic.distributed.serving:proxy_guard"
    from .distributed.cluster import connect

    connect()
    url = serving.start(os.path.abspath(args.checkpoint), args.host, args.port, limits, args.replicas, args.gpus)
    dims = "×".join(map(str, shape))
    print(f"serving on {url}: POST {{\"inputs\": N×{dims} floats in [0, 1]}}, at most {args.max_images} images",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except BaseException as e:  # Ctrl-C or SIGTERM: the operator's way to stop a server
        if interruption(e) is None:
            raise
    _stop_ray()
    print("stopped", flush=True)


def _report(args: argparse.Namespace) -> None:
    from .report import write_report

    print(write_report(_local_or_uri(args.sweep_dir))[0])


def _at_least(kind: type, low: float):  # noqa: ANN202 (an argparse type)
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}")
        return value

    return parse


CHECK = "validate the file, read its data, check the output folders, then stop: Ray is not started"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepmimic", description="DeepMimic mentor-student experiments and sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run one mentor and its students")
    run.add_argument("experiment", help="experiment YAML file")
    run.add_argument("--out", help="output folder (default runs/NAME)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    run.add_argument("--check", action="store_true", help=CHECK)
    run.set_defaults(func=_run)
    sweep = sub.add_parser("sweep", help="run a search space's grid on Ray Tune, tracked in MLflow")
    sweep.add_argument("search_space", help="search-space YAML file")
    sweep.add_argument("--storage",
                       help="root every node reaches: a local or NFS folder, s3://…, gs://… (default runs)")
    sweep.add_argument("--out", help="sweep folder (default STORAGE/NAME); rerunning on it skips finished trials")
    sweep.add_argument("--cache", help="mentor cache shared between sweeps (default $DEEPMIMIC_CACHE or STORAGE/cache)")
    sweep.add_argument("--resume", action="store_true", help="continue the sweep in --out (also the default behaviour)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    sweep.add_argument("--check", action="store_true", help=CHECK)
    sweep.set_defaults(func=_sweep)
    export = sub.add_parser("export", help="turn a trained checkpoint into a black-box mentor file")
    export.add_argument("checkpoint", help="a checkpoint folder (a mentor's result names it)")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument("--out", required=True, help="the file to write")
    export.set_defaults(func=_export)
    serve = sub.add_parser("serve", help="serve a trained checkpoint as a black-box mentor over HTTP")
    serve.add_argument("checkpoint", help="a checkpoint folder (a mentor's result names it)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=_at_least(int, 0), default=8080)
    serve.add_argument("--max-images", type=_at_least(int, 1), default=256,
                       help="images per request (bounds the body size)")
    serve.add_argument("--timeout", type=_at_least(float, 0.1), default=30.0,
                       help="seconds a request may take, body included")
    serve.add_argument("--replicas", type=_at_least(int, 1), default=1)
    serve.add_argument("--gpus", type=_at_least(float, 0.0), default=0.0, help="GPUs per replica (may be fractional)")
    serve.set_defaults(func=_serve)
    example = sub.add_parser("example-data", help="write scikit-learn's digits as your own data would look")
    example.add_argument("folder", help="a new folder: FOLDER/train/<class>/, FOLDER/test/<class>/, FOLDER/unlabeled/")
    example.set_defaults(func=_example_data)
    report = sub.add_parser("report", help="rewrite a sweep's results.csv, report.md and plots")
    report.add_argument("sweep_dir")
    report.set_defaults(func=_report)
    return parser


def _stop_ray() -> None:
    """End what this command started on Ray: its trials and tasks, and the local Ray it may have started."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """The command's work: 0 done, 2 a user's mistake (one line), 130/143 stopped by SIGINT/SIGTERM."""
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        print(f"deepmimic: error: {e.line()}", file=sys.stderr)
        return 2
    except BaseException as e:
        stop = interruption(e)
        if stop is None:
            raise
        _stop_ray()  # the trials with it; where that hangs, the stop's watchdog ends the process
        print(stopping.MESSAGE, file=sys.stderr, flush=True)
        return 128 + stop.signum
    return 0


def entry() -> None:
    """The `deepmimic` executable: `main` with SIGINT and SIGTERM stopping it cleanly."""
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # ours stops the sweep, keeping what finished
    stopping.install()
    code = main()
    stopping.ending()  # before the exit handlers' `ray.shutdown` kills the trials
    # The exit handlers (Ray's shutdown among them) run now; then the process ends without Python's own
    # finalisation, which frees every module and runs PyTorch's and Ray's C++ destructors: more than a second
    # after a sweep (benchmarks/RESULTS.md), with nothing in it that a finished command needs.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
