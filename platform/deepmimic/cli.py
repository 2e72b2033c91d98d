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
        rows.append(f"{m['name']:<12} {m['architecture']:<28} {m['params']:>9} {m['test_accuracy']:>9.4f} "
                    f"{m['test_loss']:>7.4f} {rel} {agr} {m['inference_time_s']:>8.4f}")
    rows.append("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()))
    return "\n".join(rows)


def _run(args: argparse.Namespace) -> None:
    from .config import load_experiment

    cfg = load_experiment(args.experiment, args.set)
    from .distributed.cluster import connect
    from .distributed.experiment import run_experiment

    connect()
    out = args.out or os.path.join("runs", cfg.name)
    result = run_experiment(cfg, out)
    print(format_result(result))
    print(f"wrote {os.path.join(out, 'result.json')}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepmimic", description="DeepMimic mentor-student experiments and sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run one mentor and its students")
    run.add_argument("experiment", help="experiment YAML file")
    run.add_argument("--out", help="output folder (default runs/NAME)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    run.set_defaults(func=_run)
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
