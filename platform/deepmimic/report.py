"""`results.csv`, `report.md` and plots for a sweep folder, shaped like the paper's tables."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import defaultdict
from statistics import mean, pstdev
from typing import Any

import pyarrow.fs as pafs

from . import paper, plots
from .core import tables
from .errors import UserError

SWEEP_FILE = "sweep.json"


def load_records(sweep_dir: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep's description and its finished trials, in grid order (local folder or storage URI)."""
    if not tables.exists(f"{sweep_dir}/{SWEEP_FILE}"):
        raise UserError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    sweep = _read(f"{sweep_dir}/{SWEEP_FILE}")
    order = {k: i for i, k in enumerate(sweep["trial_keys"])}
    fs, path = tables.filesystem(f"{sweep_dir}/trials")
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    records = [_read(_uri(sweep_dir, f.path, path)) for f in found if f.base_name == "trial.json"]
    return sweep, sorted(records, key=lambda r: order.get(r["key"], len(order)))


def _read(uri: str) -> Any:
    try:
        return tables.read_json(uri)
    except tables.TornArtifact as e:
        raise UserError(f"{e}: run the sweep again, which redoes it") from None


def _uri(sweep_dir: str, found: str, base: str) -> str:
    """Turn a path found under `base` back into a URI under `sweep_dir`'s scheme."""
    return f"{sweep_dir}/trials{found[len(base):]}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _mean_sd(xs: list[float]) -> str:
    return _pct(mean(xs)) + (f" ± {_pct(pstdev(xs))}" if len(xs) > 1 else "")


def results_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        s, m = r["student"], r["mentor"]
        rows.append({**{k: v for k, v in r["grid"].items()}, "seed": r["seed"], "split_ratio": r["split_ratio"],
                     "removal_bound": r["variant"]["removal_bound"], "ood_ratio": r["variant"]["ood_ratio"],
                     "mentor": m["name"], "mentor_architecture": m["architecture"],
                     "mentor_queries": (m.get("queries") or {}).get("images"),
                     "student": s["name"], "architecture": s["architecture"], "mentor_accuracy": m["test_accuracy"],
                     "student_accuracy": s["test_accuracy"], "relative_accuracy": s["relative_accuracy"],
                     "agreement": s["agreement"], "student_params": s["params"], "mentor_params": m["params"],
                     "mentor_inference_s": m["inference_time_s"], "student_inference_s": s["inference_time_s"],
                     "train_pool": s["train_size"]["pool"], "train_ood": s["train_size"]["ood"],
                     "method": s.get("method", "deepmimic"), "temperature": s.get("temperature", 1.0),
                     "accuracy_where_mentor_wrong": s.get("accuracy_where_mentor_wrong"),
                     "ood_agreement": s.get("ood_agreement")})
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _by_axis(rows: list[dict[str, Any]], axis: str, paper_values: dict | None, title: str) -> str:
    """Tables 3, 4 and Fig. 1: student accuracy per value of one axis, a column per student."""
    students = list(dict.fromkeys(r["student"] for r in rows))
    cells: dict[tuple[float, str], list[float]] = defaultdict(list)
    mentor: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        cells[(r[axis], r["student"])].append(r["student_accuracy"])
        mentor[r[axis]].append(r["mentor_accuracy"])
    header = [axis, "mentor"] + students + ([f"paper {s} (CIFAR-10)" for s in students] if paper_values else [])
    body = []
    for v in sorted(mentor):
        row = [f"{v:g}", _mean_sd(sorted(set(mentor[v])))] + [_mean_sd(cells[(v, s)]) if cells[(v, s)] else "–" for s in students]
        if paper_values:
            row += [paper_values.get(round(v, 2), {}).get(s, "–") for s in students]
        body.append(row)
    return f"## {title}\n\n{_table(header, body)}\n"


def _architectures(rows: list[dict[str, Any]], paper_rows: dict | None, title: str) -> str:
    """Tables 1, 2, 5: mentor and each student, accuracy and relative accuracy."""
    mentor = [r["mentor_accuracy"] for r in {(r["seed"], r["split_ratio"]): r for r in rows}.values()]
    arch = {r["student"]: r["architecture"] for r in rows}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["student"]].append(r)
    header = ["model", "architecture", "params", "accuracy %", "relative %", "agreement %"]
    if paper_rows:
        header += ["paper accuracy %", "paper relative %"]
    first = rows[0]
    body = [["Mentor", first.get("mentor_architecture", "(mentor)"), first["mentor_params"] or "–", _mean_sd(mentor), "–", "–"]]
    for name, rs in groups.items():
        body.append([name, arch[name], rs[0]["student_params"], _mean_sd([r["student_accuracy"] for r in rs]),
                     _mean_sd([r["relative_accuracy"] for r in rs]), _mean_sd([r["agreement"] for r in rs])])
    if paper_rows:
        for row in body:
            p = paper_rows.get(row[0])
            row += [p[1], p[2] if p[2] else "–"] if p else ["–", "–"]
    return f"## {title}\n\n{_table(header, body)}\n"


def _methods(rows: list[dict[str, Any]]) -> str:
    """Methods side by side (beyond the paper): a row per student and method, with fidelity to the mentor."""
    fmt = lambda x: _pct(x) if x is not None else "–"  # noqa: E731
    body = []
    for r in rows:
        method = r["method"] + (f" (T={r['temperature']:g})" if r["method"] == "hinton" else "")
        body.append([r["student"], method, _pct(r["mentor_accuracy"]), _pct(r["student_accuracy"]),
                     _pct(r["relative_accuracy"]), _pct(r["agreement"]), fmt(r["accuracy_where_mentor_wrong"]),
                     fmt(r["ood_agreement"])])
    header = ["student", "method", "mentor %", "student %", "relative %", "agreement %",
              "accuracy where mentor wrong %", "out-of-domain agreement %"]
    return "## Methods: DeepMimic and the alternatives (beyond the paper)\n\n" + _table(header, body) + "\n"


def _mentors(rows: list[dict[str, Any]]) -> str:
    """Mentors side by side (beyond the paper): trained, black-box and ensemble mentors, and the students they taught."""
    body = [[r["mentor"], r["mentor_architecture"], r["student"], _pct(r["mentor_accuracy"]), _pct(r["student_accuracy"]),
             _pct(r["relative_accuracy"]), _pct(r["agreement"]), r["mentor_queries"] if r["mentor_queries"] is not None else "–"]
            for r in rows]
    header = ["mentor", "mentor is", "student", "mentor %", "student %", "relative %", "agreement %", "images queried"]
    return "## Mentors: single, black-box and ensembles (beyond the paper)\n\n" + _table(header, body) + "\n"


def _inference(rows: list[dict[str, Any]], dataset: str) -> str:
    """Table 6: test-set inference time of mentor and students, and their ratio."""
    mentor_t = mean(r["mentor_inference_s"] for r in rows)
    mentors = dict.fromkeys(r["mentor"] for r in rows)
    if len(mentors) == 1:
        body = [["Mentor", f"{mentor_t:.4f}", "1.00", _paper6(dataset, "Mentor")]]
    else:  # a mentor axis: each mentor, and ratios to their mean
        body = [[f"Mentor {m}", f"{t:.4f}", f"{t / mentor_t:.2f}", "–"]
                for m in mentors for t in [mean(r["mentor_inference_s"] for r in rows if r["mentor"] == m)]]
    for name in dict.fromkeys(r["student"] for r in rows):
        t = mean(r["student_inference_s"] for r in rows if r["student"] == name)
        body.append([name, f"{t:.4f}", f"{t / mentor_t:.2f}", _paper6(dataset, name)])
    return "## Inference time on the whole test set (Table 6)\n\n" + _table(
        ["model", "seconds", "ratio to mentor", "paper s (1050 Ti / 1070)"], body) + "\n"


def _paper6(dataset: str, model: str) -> str:
    key = {"fashion_mnist": "mnist"}.get(dataset, dataset)
    p = paper.TABLE6.get((key, model))
    return f"{p[0]} / {p[1]}" if p else "–"


def write_report(sweep_dir: str) -> tuple[str, list[str]]:
    """(Re)write results.csv, report.md and the plots of a sweep folder (local or a storage URI).

    Returns the report's text and local copies of the files written.
    """
    sweep, records = load_records(sweep_dir)
    if not records:
        raise UserError(f"{sweep_dir}: no finished trials yet")
    local = sweep_dir if "://" not in sweep_dir else tempfile.mkdtemp(prefix="deepmimic-report-")
    files = _write(local, sweep, records)
    if local != sweep_dir:
        fs, path = tables.filesystem(sweep_dir)
        for f in files + [tables.manifest_uri(f) for f in files]:
            pafs.copy_files(f, f"{path}/{os.path.basename(f)}", destination_filesystem=fs)
    with open(os.path.join(local, "report.md")) as f:
        return f.read(), files


def _write(sweep_dir: str, sweep: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Write the report's files into the local folder `sweep_dir`; return their paths."""
    rows = results_rows(records)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    tables.write_file(buffer.getvalue().encode(), os.path.join(sweep_dir, "results.csv"))

    axes = set(sweep["grid_axes"])
    key, dataset = sweep.get("paper"), sweep["dataset"]
    parts = [f"# {sweep['name']}: {dataset}, {len(records)} student trials, {sweep['counts']['mentors']} mentor(s)\n"]
    if "variant.removal_bound" in axes:
        parts.append(_by_axis(rows, "removal_bound", paper.TABLE3 if key == "table3" else None,
                              "Accuracy % per removal bound (Table 3)"))
    if "variant.ood_ratio" in axes:
        parts.append(_by_axis(rows, "ood_ratio", paper.TABLE4 if key == "table4" else None,
                              "Accuracy % per out-of-domain ratio (Table 4)"))
    if "split.mentor_ratio" in axes:
        parts.append(_by_axis(rows, "split_ratio", None, "Accuracy % per mentor split ratio (Fig. 1)"))
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in rows:
            series[r["student"]].append((r["split_ratio"], r["student_accuracy"]))
        series["Mentor"] = sorted({(r["split_ratio"], r["mentor_accuracy"]) for r in rows})
        plots.accuracy_by("mentor split ratio", series, os.path.join(sweep_dir, "accuracy_vs_split.png"))
        parts.append("![accuracy vs split](accuracy_vs_split.png)\n")
    if axes & {"method", "temperature"}:
        parts.append(_methods(rows))
    if "mentor" in axes:
        parts.append(_mentors(rows))
    elif not axes & {"variant.removal_bound", "variant.ood_ratio", "split.mentor_ratio", "method", "temperature"}:
        parts.append(_architectures(rows, paper.ARCHITECTURE_TABLES.get(key), "Accuracy per architecture (Tables 1, 2, 5)"))
    parts.append(_inference(rows, dataset))

    first = records[0]
    same_point = [r for r in records if r["mentor_key"] == first["mentor_key"] and r["variant"] == first["variant"]]
    models = [first["mentor"]] + [r["student"] for r in same_point]
    plots.learning_curves(models, os.path.join(sweep_dir, "learning_curves.png"))
    plots.confusion_matrices(models[:2], os.path.join(sweep_dir, "confusion_matrices.png"))
    parts.append("## Learning curves (Figs. 2, 4, 5) and confusion matrices (Fig. 3)\n\n"
                 "![learning curves](learning_curves.png)\n\n![confusion matrices](confusion_matrices.png)\n")
    text = "\n\n".join(p.rstrip("\n") for p in parts) + "\n"
    tables.write_file(text.encode(), os.path.join(sweep_dir, "report.md"))
    names = ("results.csv", "report.md", "learning_curves.png", "confusion_matrices.png", "accuracy_vs_split.png")
    return [os.path.join(sweep_dir, n) for n in names if os.path.exists(os.path.join(sweep_dir, n))]
