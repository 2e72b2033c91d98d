"""The `deepmimic` command."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user mistake
        raise UserError(f"{self.prog}: {message}")


def format_result(result: dict[str, Any]) -> str:
    """The result of one experiment as a text table."""
    head = f"{'model':<12} {'architecture':<28} {'params':>9} {'accuracy':>9} {'loss':>7} {'relative':>9} {'agreement':>9} {'infer s':>8}"
    rows = [f"{result['dataset']}: mentor {result['sizes']['mentor']} labelled, student pool {result['sizes']['student']} unlabelled, test {result['sizes']['test']}", head]
    for m in [result["mentor"], *result["students"]]:
        rel = f"{m['relative_accuracy']:>9.4f}" if "relative_accuracy" in m else f"{'-':>9}"
        agr = f"{m['agreement']:>9.4f}" if "agreement" in m else f"{'-':>9}"
        rows.append(f"{m['name']:<12} {m['architecture']:<28} {m['params'] or '-':>9} {m['test_accuracy']:>9.4f} "
                    f"{m['test_loss']:>7.4f} {rel} {agr} {m['inference_time_s']:>8.4f}")
    rows.append("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()))
    return "\n".join(rows)


def _check_data(configs: list[Any]) -> None:
    """Every data folder the configs name, checked in the driver before any Ray work."""
    from .config import DATASET_SHAPES, black_boxes
    from .core.datasets import check_dataset

    wanted = {(c.dataset.name, c.dataset.root) for c in configs}
    wanted |= {(c.ood.dataset.name, c.ood.dataset.root) for c in configs if getattr(c, "ood", None) and c.ood.dataset}
    for name, root in sorted(wanted, key=str):
        check_dataset(name, root, DATASET_SHAPES[name])
    for c in configs:
        for box in black_boxes(c.mentor):
            if box.kind != "http" and not os.path.isfile(box.location):
                raise UserError(f"mentor black_box.location {box.location}: no such file")


def _run(args: argparse.Namespace) -> None:
    from .config import load_experiment

    cfg = load_experiment(args.experiment, args.set)
    _check_data([cfg])
    from .distributed.cluster import connect
    from .distributed.experiment import run_experiment

    connect()
    out = args.out or os.path.join("runs", cfg.name)
    result = run_experiment(cfg, out)
    print(format_result(result))
    print(f"wrote {os.path.join(out, 'result.json')}")


def _sweep(args: argparse.Namespace) -> None:
    from .config import load_sweep

    base, points = load_sweep(args.search_space, args.set)
    _check_data([cfg for _, cfg in points])
    storage = _local_or_uri(args.storage or "runs")
    out = _local_or_uri(args.out or f"{storage}/{base.name}")
    cache = _local_or_uri(args.cache or os.environ.get("DEEPMIMIC_CACHE") or f"{storage}/cache")
    from .core import tables
    from .distributed.cluster import connect
    from .distributed.sweep import mentor_folder, plan, run_sweep, trial_file
    from .report import SWEEP_FILE, write_report
    from .tracking import Tracker, check_reachable, default_uri

    server = os.environ.get("MLFLOW_TRACKING_URI")
    if not server and "://" in out:
        raise UserError(f"--storage {storage}: a sweep on remote storage needs MLFLOW_TRACKING_URI (a tracking server)")
    uri = server or default_uri(out)
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)  # before anything is written
    connect()  # a cluster that cannot be reached fails here, before anything is written too
    if "://" not in out:
        os.makedirs(out, exist_ok=True)
    tracker = Tracker(uri, base.name, out, None if server else f"{out}/mlartifacts")
    mentors, trials = plan(points)
    sweep = {"name": base.name, "dataset": base.dataset.name, "paper": base.paper, "grid_axes": list(base.grid),
             "trial_keys": list(trials), "config": base.model_dump(), "counts": {"mentors": 0}}
    tables.write_json(sweep, f"{out}/{SWEEP_FILE}")
    counts = run_sweep(base, points, out, cache,
                       on_mentor=lambda key, cfg, result: tracker.log_mentor(key, _mentor_params(cfg), result),
                       on_trial=tracker.log_student)
    # What finished without being logged (the driver of an interrupted sweep died first) is logged now;
    # runs logged before are skipped, so MLflow holds each mentor and trial once.
    for key, cfg in mentors.items():
        tracker.log_mentor(key, _mentor_params(cfg), tables.read_json(f"{mentor_folder(cache, key)}/mentor.json")["result"])
    for key in trials:
        tracker.log_student(tables.read_json(trial_file(out, key)))
    sweep["counts"] = {k: v for k, v in counts.items() if k != "trial_keys"}
    tables.write_json(sweep, f"{out}/{SWEEP_FILE}")
    text, files = write_report(out)
    print(text)
    tracker.finish({"grid_axes": ",".join(base.grid), "dataset": base.dataset.name}, sweep["counts"], files)
    c = sweep["counts"]
    print(f"mentors: {c['mentors']} ({c['mentors_trained']} trained, {c['mentors_reused']} reused); "
          f"student trials: {c['trials']} ({c['trials_run']} run, {c['trials_reused']} already done)")
    print(f"results: {out}/results.csv, {out}/report.md")
    if uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {uri}")
    else:
        print(f"tracked at {uri}")


def _local_or_uri(path: str) -> str:
    """Absolute local paths (every process agrees on them); URIs (s3://, gs://, …) as given."""
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def _mentor_params(cfg: Any) -> dict[str, Any]:
    from .config import BlackBoxMentorConfig, ModelConfig

    common = {"dataset": cfg.dataset.name, "split_ratio": cfg.split.mentor_ratio, "seed": cfg.seed}
    if isinstance(cfg.mentor, ModelConfig):
        return {**common, "architecture": cfg.mentor.architecture, **cfg.mentor.training.model_dump()}
    if isinstance(cfg.mentor, BlackBoxMentorConfig):
        return {**common, **{f"black_box.{k}": v for k, v in cfg.mentor.black_box.model_dump().items()}}
    return {**common, "ensemble.rule": cfg.mentor.rule, "ensemble.members": ",".join(m.name for m in cfg.mentor.members)}


def _load_checkpoint(folder: str) -> tuple[Any, tuple[int, int, int]]:
    from .core import checkpoints, tables

    try:
        return checkpoints.load_model(folder), tuple(checkpoints.model_meta(folder)["shape"])
    except tables.TornArtifact as e:
        raise UserError(f"{e} (expected a mentor's checkpoint folder: its result's `checkpoint`)") from None


def _export(args: argparse.Namespace) -> None:
    from .core.serving import export

    model, shape = _load_checkpoint(args.checkpoint)
    export(model, shape, args.format, args.out)
    print(f"wrote {args.out}: {args.format}, float images in [0, 1] of shape N×{'×'.join(map(str, shape))} → probabilities")


def _serve(args: argparse.Namespace) -> None:
    from .core.serving import http_server

    model, shape = _load_checkpoint(args.checkpoint)
    try:
        server = http_server(model, args.host, args.port)
    except OSError as e:
        raise UserError(f"--port {args.port}: cannot listen ({e.strerror})") from None
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/invocations: POST {{\"inputs\": N×{'×'.join(map(str, shape))} floats in [0, 1]}}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


def _report(args: argparse.Namespace) -> None:
    from .report import write_report

    print(write_report(_local_or_uri(args.sweep_dir))[0])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepmimic", description="DeepMimic mentor-student experiments and sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run one mentor and its students")
    run.add_argument("experiment", help="experiment YAML file")
    run.add_argument("--out", help="output folder (default runs/NAME)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    run.set_defaults(func=_run)
    sweep = sub.add_parser("sweep", help="run a search space's grid on Ray Tune, tracked in MLflow")
    sweep.add_argument("search_space", help="search-space YAML file")
    sweep.add_argument("--storage", help="root every node reaches: a local or NFS folder, s3://…, gs://… (default runs)")
    sweep.add_argument("--out", help="sweep folder (default STORAGE/NAME); rerunning on it skips finished trials")
    sweep.add_argument("--cache", help="mentor cache shared between sweeps (default $DEEPMIMIC_CACHE or STORAGE/cache)")
    sweep.add_argument("--resume", action="store_true", help="continue the sweep in --out (also the default behaviour)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    sweep.set_defaults(func=_sweep)
    export = sub.add_parser("export", help="turn a trained checkpoint into a black-box mentor file")
    export.add_argument("checkpoint", help="a checkpoint folder (a mentor's result names it)")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument("--out", required=True, help="the file to write")
    export.set_defaults(func=_export)
    serve = sub.add_parser("serve", help="serve a trained checkpoint as a black-box mentor over HTTP")
    serve.add_argument("checkpoint", help="a checkpoint folder (a mentor's result names it)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_serve)
    report = sub.add_parser("report", help="rewrite a sweep's results.csv, report.md and plots")
    report.add_argument("sweep_dir")
    report.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        print(f"deepmimic: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
