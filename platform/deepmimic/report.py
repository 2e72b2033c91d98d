"""`results.csv`, `report.md` and plots for a sweep folder, shaped like the paper's tables."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tempfile
from collections import defaultdict
from statistics import mean, pstdev
from typing import Any, Callable

import numpy as np
import pyarrow.fs as pafs

from . import paper, plots
from .core import artifacts
from .core.evaluation import paired_bootstrap
from .core.results import MentorResult, ModelResult, SweepSummary, TrialRecord
from .core.student_search import SearchSummary, pareto_front
from .errors import UserError
from .run_names import value_text

SWEEP_FILE = "sweep.json"
SEARCH_FILE = "search.json"
POOL_WORTH = "accuracy_vs_labelled_fraction.png"
BUDGET_CURVE = "accuracy_vs_queries.png"
WITHIN = 0.01  # how close to the unbudgeted student a budget must bring one: its queries are what it took


def load_records(sweep_dir: str) -> tuple[SweepSummary, list[TrialRecord]]:
    """The sweep's description and its finished trials, in grid order (local folder or storage URI)."""
    if not artifacts.exists(f"{sweep_dir}/{SWEEP_FILE}"):
        raise UserError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    sweep = SweepSummary.from_json(_read(f"{sweep_dir}/{SWEEP_FILE}"))
    order = {k: i for i, k in enumerate(sweep.trial_keys)}
    fs, path = artifacts.filesystem(f"{sweep_dir}/trials")
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    # a path found under the local `path`, back under `sweep_dir`'s scheme
    records = [TrialRecord.from_json(_read(f"{sweep_dir}/trials{f.path[len(path):]}"))
               for f in found if f.base_name == "trial.json"]
    return sweep, sorted(records, key=lambda r: order.get(r.key, len(order)))


def _read(uri: str) -> Any:
    try:
        return artifacts.read_json(uri)
    except artifacts.TornArtifact as e:
        raise UserError(f"{e}: run the sweep again, which redoes it") from None


def _pct(x: float | None) -> str:
    return f"{100 * x:.2f}" if x is not None else "–"


def _mean_sd(xs: list[float]) -> str:
    return _pct(mean(xs)) + (f" ± {_pct(pstdev(xs))}" if len(xs) > 1 else "")


def results_rows(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """A row per trial for results.csv: its grid values, then mentor and student figures."""
    rows = []
    for r in records:
        s, m = r.student, r.mentor
        rows.append({**r.grid, "seed": r.seed, "split_ratio": r.split_ratio, "removal_bound": r.removal_bound,
                     "ood_ratio": r.ood_ratio, "mentor": m.name, "mentor_architecture": m.architecture,
                     "mentor_queries": m.queries.images if m.queries else None,
                     "selection": m.budget.selection if m.budget else None,
                     "pool_queries": m.budget.asked if m.budget else None,
                     "student": s.name, "architecture": s.architecture, "mentor_accuracy": m.test_accuracy,
                     "student_accuracy": s.test_accuracy, "relative_accuracy": s.relative_accuracy,
                     "agreement": s.agreement, "student_params": s.params, "mentor_params": m.params,
                     "mentor_inference_s": m.inference_time_s, "student_inference_s": s.inference_time_s,
                     "train_pool": s.train_pool, "train_ood": s.train_ood, "method": s.method,
                     **{f"method.{k}": v for k, v in s.method_knobs.items()},
                     "accuracy_where_mentor_wrong": s.accuracy_where_mentor_wrong,
                     "ood_agreement": s.ood_agreement, "accuracy_gap": s.test_accuracy - m.test_accuracy,
                     "accuracy_gap_low": s.accuracy_gap_low, "accuracy_gap_high": s.accuracy_gap_high,
                     **{f"last_epoch_{k}": v for k, v in (s.history[-1].train_stats if s.history else {}).items()}})
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _by_axis(records: list[TrialRecord], value: Callable[[TrialRecord], float], axis: str,
             paper_values: dict | None, title: str) -> str:
    """Tables 3, 4 and Fig. 1: student accuracy per value of one axis, a column per student."""
    students = list(dict.fromkeys(r.student.name for r in records))
    cells: dict[tuple[float, str], list[float]] = defaultdict(list)
    mentor: dict[float, list[float]] = defaultdict(list)
    for r in records:
        cells[(value(r), r.student.name)].append(r.student.test_accuracy)
        mentor[value(r)].append(r.mentor.test_accuracy)
    header = [axis, "mentor"] + students + ([f"paper {s} (CIFAR-10)" for s in students] if paper_values else [])
    body = []
    for v in sorted(mentor):
        row = [f"{v:g}", _mean_sd(sorted(set(mentor[v])))]
        row += [_mean_sd(cells[(v, s)]) if cells[(v, s)] else "–" for s in students]
        if paper_values:
            row += [paper_values.get(round(v, 2), {}).get(s, "–") for s in students]
        body.append(row)
    return f"## {title}\n\n{_table(header, body)}\n"


def _architectures(records: list[TrialRecord], paper_rows: dict | None, title: str) -> str:
    """Tables 1, 2, 5: each mentor and each student, accuracy and relative accuracy; where the sweep has several
    mentors (kinds, generations), a row each, and each student's rows by the mentor it learnt from."""
    mentors: dict[str, dict[tuple, MentorResult]] = defaultdict(dict)
    for r in records:
        mentors[r.mentor.name][(r.seed, r.split_ratio)] = r.mentor
    several = len(mentors) > 1
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        groups[f"{r.student.name} ← {r.mentor.name}" if several else r.student.name].append(r)
    header = ["model", "architecture", "params", "accuracy %", "relative %", "agreement %"]
    if paper_rows:
        header += ["paper accuracy %", "paper relative %"]
    body = []
    for name, made in mentors.items():
        first = next(iter(made.values()))
        body.append([name if several else "Mentor", first.architecture, first.params or "–",
                     _mean_sd([m.test_accuracy for m in made.values()]), "–", "–"])
    for name, rs in groups.items():
        students = [r.student for r in rs]
        body.append([name, students[0].architecture, students[0].params,
                     _mean_sd([s.test_accuracy for s in students]), _mean_sd([s.relative_accuracy for s in students]),
                     _mean_sd([s.agreement for s in students])])
    if paper_rows:
        for row in body:
            p = paper_rows.get(row[0])
            row += [p[1], p[2] if p[2] else "–"] if p else ["–", "–"]
    return f"## {title}\n\n{_table(header, body)}\n"


def _pool_worth(records: list[TrialRecord], sweep_dir: str) -> str:
    """What the unlabelled pool is worth (beyond the paper): test accuracy against the labelled fraction, a line
    per mentor (the mentor alone, its generations, FixMatch, …) and per student of each, means over seeds."""
    lines: dict[str, dict[float, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:  # a mentor once per (its key), a student once per trial
        lines[r.mentor.name][r.split_ratio][r.mentor_key] = r.mentor.test_accuracy
        lines[f"{r.student.name} ← {r.mentor.name}"][r.split_ratio][(r.mentor_key, r.seed)] = r.student.test_accuracy
    fractions = sorted({r.split_ratio for r in records})
    body = [[f"{f:g}", *(_mean_sd(list(line[f].values())) if line.get(f) else "–" for line in lines.values())]
            for f in fractions]
    series = {name: [(f, mean(by[f].values())) for f in fractions if by.get(f)] for name, by in lines.items()}
    plots.accuracy_by("labelled fraction (split.mentor_ratio)", series, os.path.join(sweep_dir, POOL_WORTH),
                      log_x=fractions[-1] >= 10 * fractions[0])
    return ("## What the unlabelled pool is worth: test accuracy against the labelled fraction (beyond the paper)\n\n"
            f"![accuracy against the labelled fraction]({POOL_WORTH})\n\n" + _table(["fraction", *lines], body) + "\n")


def _reference(sweep: SweepSummary, records: list[TrialRecord]) -> str:
    """The mentor the others are compared with: the space's own `mentor:` (generation 0), else the first."""
    own = (sweep.config.get("mentor") or {}).get("name")
    return own if any(r.mentor.name == own for r in records) else records[0].mentor.name


def _references(records: list[TrialRecord], reference: str) -> str:
    """Each mentor and each student of each, per labelled fraction: test accuracy over seeds (mean ± sd) and its
    difference from the `reference` mentor (the space's own: generation 0) with a paired bootstrap 95% interval
    over the same test images, each seed's images paired with the reference's of the same seed."""
    point = {(r.split_ratio, r.seed, r.removal_bound, r.ood_ratio): r.mentor for r in records
             if r.mentor.name == reference}
    models: dict[tuple[str, float], dict[Any, ModelResult]] = defaultdict(dict)
    for r in records:
        where = (r.split_ratio, r.seed, r.removal_bound, r.ood_ratio)
        mark = " (reference: saw the pool's labels)" if r.mentor.sees_pool_labels else ""
        models[(r.mentor.name + mark, r.split_ratio)][where] = r.mentor
        models[(f"{r.student.name} ← {r.mentor.name}{mark}", r.split_ratio)][where + (r.student.name,)] = r.student
    body = []
    for (name, fraction), by in models.items():
        pairs = [(point[w[:4]].correct(), m.correct()) for w, m in by.items() if w[:4] in point]
        itself = not any(m is not point.get(w[:4]) for w, m in by.items())
        gap, interval = _paired_gap([] if itself else pairs)
        body.append([name, f"{fraction:g}", len(by), _mean_sd([m.test_accuracy for m in by.values()]), gap, interval])
    body.sort(key=lambda row: (float(row[1]), row[0] != reference))
    header = ["model", "fraction", "seeds", "accuracy %", f"− {reference}, points", "95% interval"]
    return (f"## Against the generation-0 mentor ({reference}): paired bootstrap intervals, seeds pooled\n\n"
            + _table(header, body) + "\n")


def _budgets(records: list[TrialRecord], sweep_dir: str) -> str:
    """What a query budget buys (beyond the paper): per black box and student, accuracy and agreement with the
    mentor against the pool images asked, a line per strategy, the unbudgeted student (every image asked) as the
    ceiling; each strategy's difference from random at the same budget, a paired bootstrap 95% interval over the
    test images with each seed paired with random's, seeds pooled; and the queries each needs to come within
    `WITHIN` of the ceiling."""
    parts = []
    for (mentor, student), rs in _grouped(records, lambda r: (r.mentor.name, r.student.name)).items():
        ceiling = [r.student for r in rs if r.mentor.budget is None or r.mentor.budget.asked == r.mentor.budget.pool]
        cells = _grouped([r for r in rs if r.mentor.budget and r.mentor.budget.asked < r.mentor.budget.pool],
                         lambda r: (r.mentor.budget.selection, r.mentor.budget.asked))  # type: ignore[union-attr]
        if not cells:
            continue
        random_at = {(r.mentor.budget.asked, r.seed): r.student for r in rs  # type: ignore[union-attr]
                     if r.mentor.budget and r.mentor.budget.selection == "random"}
        body = []
        for (selection, asked), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0] != "random")):
            gap, interval = _paired_gap([(random_at[(asked, r.seed)].correct(), r.student.correct()) for r in cell
                                         if (asked, r.seed) in random_at and selection != "random"])
            body.append([selection, asked, len(cell), _mean_sd([r.student.test_accuracy for r in cell]),
                         _mean_sd([r.student.agreement for r in cell]), gap, interval])
        if ceiling:
            body.append(["every pool image (ceiling)", rs[0].mentor.budget.pool if rs[0].mentor.budget else "all",
                         len(ceiling), _mean_sd([s.test_accuracy for s in ceiling]),
                         _mean_sd([s.agreement for s in ceiling]), "–", "–"])
        curves = {metric: {sel: [(asked, mean(getattr(r.student, metric) for r in cell))
                                 for (s, asked), cell in cells.items() if s == sel]
                           for sel in dict.fromkeys(s for s, _ in cells)} for metric in ("test_accuracy", "agreement")}
        levels = {m: mean(getattr(s, m) for s in ceiling) for m in curves} if ceiling else {}
        path = BUDGET_CURVE if not parts else BUDGET_CURVE.replace(".png", f"_{len(parts)}.png")
        plots.budget_curves(curves, levels, f"{student} ← {mentor}", os.path.join(sweep_dir, path))
        needed = _queries_to_reach(curves["test_accuracy"], levels["test_accuracy"]) if ceiling else ""
        header = ["selection", "pool images asked", "seeds", "student accuracy %", "agreement %",
                  "− random, points", "95% interval"]
        parts.append(f"### {student} ← {mentor}\n\n![accuracy and agreement against queries]({path})\n\n"
                     + _table(header, body) + needed)
    if not parts:
        return ""
    return "## What a query budget buys: the student against the pool images asked (beyond the paper)\n\n" + \
        "\n\n".join(parts) + "\n"


def _queries_to_reach(lines: dict[str, list[tuple[int, float]]], ceiling: float) -> str:
    """The fewest queries with which each strategy's mean accuracy comes within `WITHIN` of the `ceiling`, and
    that as a share of random's."""
    reach = {sel: min((q for q, acc in line if acc >= ceiling - WITHIN), default=None) for sel, line in lines.items()}
    return f"\n\nQueries to come within {100 * WITHIN:g} point of the ceiling (mean accuracy): " + ", ".join(
        f"{sel} {q if q is not None else 'not within the budgets swept'}"
        + (f" ({q / reach['random']:.2f}× random's)" if q and reach.get("random") and sel != "random" else "")
        for sel, q in reach.items())


def _grouped(records: list[TrialRecord], key: Callable[[TrialRecord], Any]) -> dict[Any, list[TrialRecord]]:
    groups: dict[Any, list[TrialRecord]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return groups


def _paired_gap(pairs: list[tuple[np.ndarray | None, np.ndarray | None]]) -> tuple[str, str]:
    """A model's accuracy minus a reference's, in points, and its paired bootstrap 95% interval, over the test
    images of every (reference's, model's) pair of right-or-wrong answers given, pooled; "–" without any."""
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None and len(a) == len(b)]
    if not pairs:
        return "–", "–"
    ref, own = (np.concatenate(x) for x in zip(*pairs))
    low, high = paired_bootstrap(ref, own)
    return f"{100 * (own.mean() - ref.mean()):+.2f}", f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def _methods(records: list[TrialRecord]) -> str:
    """Methods side by side (beyond the paper): a row per student and method, with fidelity to the mentor."""
    body = []
    for r in records:
        s = r.student
        body.append([s.name, s.method_text(), _pct(r.mentor.test_accuracy), _pct(s.test_accuracy),
                     _pct(s.relative_accuracy), _pct(s.agreement), _pct(s.accuracy_where_mentor_wrong),
                     _pct(s.ood_agreement)])
    header = ["student", "method", "mentor %", "student %", "relative %", "agreement %",
              "accuracy where mentor wrong %", "out-of-domain agreement %"]
    return "## Methods: DeepMimic and the alternatives (beyond the paper)\n\n" + _table(header, body) + "\n"


def _gaps(records: list[TrialRecord], axes: tuple[str, ...]) -> str:
    """Each trial's student minus mentor accuracy with its paired bootstrap 95% interval (same test images)."""
    shown = [a for a in axes if a != "student"]
    body = []
    for r in records:
        s = r.student
        gap = s.test_accuracy - r.mentor.test_accuracy
        interval = (f"[{100 * s.accuracy_gap_low:+.2f}, {100 * s.accuracy_gap_high:+.2f}]"
                    if s.accuracy_gap_low is not None else "–")
        body.append([s.name, *(value_text(r.grid.get(a, "")) for a in shown), f"{100 * gap:+.2f}", interval])
    return ("## Student − mentor accuracy, points, with paired bootstrap 95% intervals\n\n"
            + _table(["student", *shown, "difference", "95% interval"], body) + "\n")


def _galleries(records: list[TrialRecord], sweep_dir: str) -> str:
    """Figs. 6-7 for the students of one grid point, drawn (once) beside each trial from what it kept."""
    shown = [f"![{r.student.name}]({os.path.relpath(plots.gallery_figure(r.student.galleries), sweep_dir)})"
             for r in records if r.student.galleries and not artifacts.is_uri(r.student.galleries)]
    if not shown:
        return ""
    return ("## Test images by who classifies them right (Figs. 6-7)\n\n" + "\n\n".join(shown) + "\n")


def _mentors(records: list[TrialRecord]) -> str:
    """Mentors side by side (beyond the paper): trained, black-box and ensemble mentors, and their students."""
    body = [[r.mentor.name, r.mentor.architecture, r.student.name, _pct(r.mentor.test_accuracy),
             _pct(r.student.test_accuracy), _pct(r.student.relative_accuracy), _pct(r.student.agreement),
             r.mentor.queries.images if r.mentor.queries else "–"]
            for r in records]
    header = ["mentor", "mentor is", "student", "mentor %", "student %", "relative %", "agreement %", "images queried"]
    title = "## Mentors: single, black-box, ensembles, generations, FixMatch (beyond the paper)"
    return f"{title}\n\n{_table(header, body)}\n"


def _inference(records: list[TrialRecord], dataset: str) -> str:
    """Table 6: test-set inference time of mentor and students, and their ratio; the paper's seconds beside them
    where it timed the same models, on the data set it timed them on (MNIST's for Fashion-MNIST, said so)."""
    timed_on = PAPER6_DATASET.get(dataset, dataset)
    mentor_t = mean(r.mentor.inference_time_s for r in records)
    mentors = dict.fromkeys(r.mentor.name for r in records)
    if len(mentors) == 1:
        body = [["Mentor", f"{mentor_t:.4f}", "1.00", _paper6(timed_on, "Mentor")]]
    else:  # a mentor axis: each mentor, and ratios to their mean
        body = [[f"{m} (mentor)", f"{t:.4f}", f"{t / mentor_t:.2f}", "–"]
                for m in mentors for t in [mean(r.mentor.inference_time_s for r in records if r.mentor.name == m)]]
    for name in dict.fromkeys(r.student.name for r in records):
        t = mean(r.student.inference_time_s for r in records if r.student.name == name)
        body.append([name, f"{t:.4f}", f"{t / mentor_t:.2f}", _paper6(timed_on, name)])
    column = "paper s (1050 Ti / 1070)" if timed_on == dataset else \
        f"paper s on {PAPER_NAMES.get(timed_on, timed_on)} (1050 Ti / 1070)"
    return "## Inference time on the whole test set (Table 6)\n\n" + _table(
        ["model", "seconds", "ratio to mentor", column], body) + "\n"


def _smallest(search: SearchSummary, records: list[TrialRecord], sweep_dir: str) -> str:
    """The search's answer beside its mentor (test figures from its full training as a student of the sweep),
    the Pareto front it found (validation figures), and what the search cost; writes frontier.csv and .png."""
    front = pareto_front(search.candidates, search.objective)
    on_front = {c.trial for c in front}
    rows = [{**dataclasses.asdict(c), "on_front": c.trial in on_front} for c in search.candidates]
    _write_csv(rows, os.path.join(sweep_dir, "frontier.csv"))
    plots.frontier(search, os.path.join(sweep_dir, "frontier.png"))
    best, m = search.best, search.mentor
    trained = next((r for r in records if r.student.name == search.student), None)

    def ms(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "–"

    body = [[f"{m.name} (mentor)", m.architecture, m.params or "–", ms(m.latency_ms_1), ms(m.latency_ms_256),
             _pct(trained.mentor.test_accuracy) if trained else "–", "100.00", "100.00"]]
    body.append([search.student, f"{best.architecture} (width {best.width})", best.params, ms(best.latency_ms_1),
                 ms(best.latency_ms_256), _pct(trained.student.test_accuracy) if trained else "–",
                 _pct(trained.student.relative_accuracy) if trained else "–", _pct(best.validation_relative)])
    scored = "accuracy" if search.selection == "labels" else "agreement with the mentor"
    verdict = (f"**{search.student}** is the {'smallest' if search.objective == 'params' else 'fastest'} student "
               f"found whose validation {scored} reaches {100 * search.target_relative:g}% of the mentor's"
               if search.met else f"**No student reached {100 * search.target_relative:g}%** of the mentor's "
               f"validation {scored}; **{search.student}** is the closest found")
    share = f" ({100 * best.params / m.params:.1f}% of the mentor's parameters)" if m.params else ""
    stopped = sum(c.stopped_early for c in search.candidates)
    again = sum(bool(c.duplicate_of) for c in search.candidates)
    grid = search.space_size * search.epochs
    lines = [
        "## Smallest students\n",
        f"{verdict}: `{best.architecture}`, width {best.width}, {best.params:,} parameters{share}. It was then "
        f"trained in full ({search.epochs} epochs, the whole pool) as a student of this sweep; its test figures "
        "below come from that training, and the test set chose nothing.\n",
        _table(["model", "architecture", "parameters", "ms, batch 1", "ms, batch 256", "test %",
                "relative % (test)", "relative % (validation)"], body) + "\n",
        f"Search: {len(search.candidates)} students ({search.algorithm}, scheduler {search.scheduler}; "
        f"{stopped} stopped early, {again} drawn again and not retrained) trained {search.epochs_spent} epochs; "
        "a full grid over the space's "
        f"{search.space_size} students would train {grid} ({search.epochs_spent / grid:.2f} of it). "
        f"Scored on a slice of the pool no searched student trained on ({scored}).\n",
        "Pareto front (validation):\n",
        _table(["architecture", "width", "parameters", "ms, batch 1", "relative % (validation)", "epochs"],
               [[c.architecture, c.width, c.params, ms(c.latency_ms_1), _pct(c.validation_relative), c.epochs]
                for c in front]) + "\n",
        "![frontier](frontier.png)\n",
    ]
    return "\n".join(lines)


def _write_csv(rows: list[dict[str, Any]], path: str) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    artifacts.write_bytes(buffer.getvalue().encode(), path)


PAPER6_DATASET = {"fashion_mnist": "mnist"}  # the paper's timings of Table 1's models are MNIST's
PAPER_NAMES = {"mnist": "MNIST"}


def _paper6(dataset: str, model: str) -> str:
    p = paper.TABLE6.get((dataset, model))
    return f"{p[0]} / {p[1]}" if p else "–"


def write_report(sweep_dir: str) -> tuple[str, list[str]]:
    """(Re)write results.csv, report.md and the plots of a sweep folder (local or a storage URI).

    Returns the report's text and local copies of the files written.
    """
    sweep, records = load_records(sweep_dir)
    if not records:
        raise UserError(f"{sweep_dir}: no finished trials yet")
    local = sweep_dir if not artifacts.is_uri(sweep_dir) else tempfile.mkdtemp(prefix="deepmimic-report-")
    files = _write(local, sweep, records)
    if local != sweep_dir:
        fs, path = artifacts.filesystem(sweep_dir)
        for f in files + [artifacts.manifest_uri(f) for f in files]:
            pafs.copy_files(f, f"{path}/{os.path.basename(f)}", destination_filesystem=fs)
    with open(os.path.join(local, "report.md")) as f:
        return f.read(), files


def _write(sweep_dir: str, sweep: SweepSummary, records: list[TrialRecord]) -> list[str]:
    """Write the report's files into the local folder `sweep_dir`; return their paths."""
    _write_csv(results_rows(records), os.path.join(sweep_dir, "results.csv"))

    axes, key = set(sweep.grid_axes), sweep.paper
    parts = [f"# {sweep.name}: {sweep.dataset}, {len(records)} student trials, {sweep.counts.mentors} mentor(s)\n"]
    if sweep.partial:
        parts.append(f"**Partial**: interrupted with {len(records)} of {len(sweep.trial_keys)} student trials "
                     "finished; rerun the same command to resume.\n")
    if "variant.removal_bound" in axes:
        parts.append(_by_axis(records, lambda r: r.removal_bound, "removal_bound",
                              paper.TABLE3 if key == "table3" else None, "Accuracy % per removal bound (Table 3)"))
    if "variant.ood_ratio" in axes:
        parts.append(_by_axis(records, lambda r: r.ood_ratio, "ood_ratio", paper.TABLE4 if key == "table4" else None,
                              "Accuracy % per out-of-domain ratio (Table 4)"))
    if "split.mentor_ratio" in axes and len({r.mentor.name for r in records}) > 1:
        parts.append(_pool_worth(records, sweep_dir))
        parts.append(_references(records, _reference(sweep, records)))
    elif "split.mentor_ratio" in axes:
        parts.append(_by_axis(records, lambda r: r.split_ratio, "split_ratio", None,
                              "Accuracy % per mentor split ratio (Fig. 1)"))
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in records:
            series[r.student.name].append((r.split_ratio, r.student.test_accuracy))
        series["Mentor"] = sorted({(r.split_ratio, r.mentor.test_accuracy) for r in records})
        plots.accuracy_by("mentor split ratio", series, os.path.join(sweep_dir, "accuracy_vs_split.png"))
        parts.append("![accuracy vs split](accuracy_vs_split.png)\n")
    if axes & {"method", "temperature"}:
        parts.append(_methods(records))
    budgeted = any(r.mentor.budget for r in records)
    if budgeted:
        parts.append(_budgets(records, sweep_dir))
    if "mentor" in axes:
        parts.append(_mentors(records))
        if "split.mentor_ratio" not in axes:
            parts.append(_references(records, _reference(sweep, records)))
    elif not budgeted and not axes & {"variant.removal_bound", "variant.ood_ratio", "split.mentor_ratio", "method",
                                      "temperature"}:
        parts.append(_architectures(records, paper.ARCHITECTURE_TABLES.get(key),
                                    "Accuracy per architecture (Tables 1, 2, 5)"))
    if artifacts.exists(os.path.join(sweep_dir, SEARCH_FILE)):
        parts.append(_smallest(SearchSummary.from_json(_read(os.path.join(sweep_dir, SEARCH_FILE))), records,
                               sweep_dir))
    parts.append(_inference(records, sweep.dataset))

    parts.append(_gaps(records, sweep.grid_axes))
    first = records[0]
    same_point = [r for r in records if r.mentor_key == first.mentor_key
                  and (r.removal_bound, r.ood_ratio) == (first.removal_bound, first.ood_ratio)]
    # each student once (its first trial there): a width or seed axis would otherwise draw a figure a trial
    same_point = list({r.student.name: r for r in reversed(same_point)}.values())[::-1]
    parts.append(_galleries(same_point, sweep_dir))
    models = [first.mentor] + [r.student for r in same_point]
    plots.learning_curves(models, os.path.join(sweep_dir, "learning_curves.png"))
    plots.confusion_matrices(models[:2], os.path.join(sweep_dir, "confusion_matrices.png"))
    parts.append("## Learning curves (Figs. 2, 4, 5) and confusion matrices (Fig. 3)\n\n"
                 "![learning curves](learning_curves.png)\n\n![confusion matrices](confusion_matrices.png)\n")
    text = "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"
    artifacts.write_bytes(text.encode(), os.path.join(sweep_dir, "report.md"))
    names = ("results.csv", "report.md", "learning_curves.png", "confusion_matrices.png", "accuracy_vs_split.png",
             POOL_WORTH, "frontier.csv", "frontier.png")
    curves = sorted(n for n in os.listdir(sweep_dir) if n.startswith(BUDGET_CURVE.removesuffix(".png"))
                    and n.endswith(".png"))
    return [os.path.join(sweep_dir, n) for n in (*names, *curves) if os.path.exists(os.path.join(sweep_dir, n))]
