"""`unetzoo compare`: two or more runs on one page and in a console table.

Runs are labelled A, B, C, ... in the order given; differences are "B - A" (each run minus
the first). Per-image comparisons use the images that every run's evaluation scored (joined
by image name); the images where the runs disagree most are those with the largest
difference in the ranking metric (two runs) or the largest spread (more runs), re-predicted
with each run's checkpoint and shown side by side.
"""

from __future__ import annotations

import json
import logging
import math
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError, UnetzooError
from ..fileio import atomic_write_text
from ..metrics import METRIC_NAMES
from .collect import RunData, collect_run
from .gallery import (
    AssetWriter,
    ImageAssets,
    dataset_pairs,
    reading_for,
    render_images,
    source_for,
)
from .objects import COUNT_COLUMNS, HEADLINE, headline_value, kinds_legend
from .page import (
    GENERATOR,
    PAGE_ROWS,
    ReportOptions,
    _environment,
    card,
    check_outputs,
    model_facts,
    page_json,
    resolved,
    staged_assets,
    strict_rule,
)
from .plots import RUN_COLORS, ap_curve_svg, curves_svg

log = logging.getLogger("unetzoo")


@dataclass
class Comparison:
    """What `write_comparison` wrote: the page and the console table it printed."""

    page: Path
    console: str


def run_labels(count: int) -> list[str]:
    """A, B, ..., Z, then A1, B1, ..."""
    letters = string.ascii_uppercase
    return [letters[i % 26] + (str(i // 26) if i >= 26 else "") for i in range(count)]


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else "–"
    return "–" if value is None else str(value)


PLUMBING = ("out", "overwrite", "resume", "progress")  # differ without changing the run


def config_table(runs: list[RunData]) -> list[dict[str, Any]]:
    """One row per config key: the runs' values and whether they differ; rows that differ
    come first (those that only say where and how a run was started, PLUMBING, last among
    them)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys]
    rows = []
    for key in keys:
        values = [_value(run.config.get(key)) for run in runs]
        rows.append({"key": key, "values": values, "differs": len(set(values)) > 1})
    return sorted(rows, key=lambda r: (not r["differs"], r["key"] in PLUMBING))


KINDS = (("mean_over_images", "mean / image"), ("global", "global"))


def metric_table(runs: list[RunData]) -> list[dict[str, Any]]:
    """Per metric: for each kind (mean over images, global) each run's value and its
    difference to run A (None where a run has no evaluation)."""
    rows = []
    for name in METRIC_NAMES:
        row: dict[str, Any] = {"metric": name, "kinds": []}
        for kind, title in KINDS:
            values: list[float | None] = []
            for run in runs:
                summary = run.evaluation.metrics.get(kind, {}) if run.evaluation else {}
                value = summary.get(name)
                values.append(float(value) if isinstance(value, (int, float)) else None)
            first = values[0]
            deltas = [None if v is None or first is None else v - first for v in values[1:]]
            row["kinds"].append({"kind": title, "values": values, "deltas": deltas})
        if any(v is not None for k in row["kinds"] for v in k["values"]):
            rows.append(row)
    return rows


OBJECT_KINDS = (("mean_over_images", "per image"), ("pooled", "pooled"))
OBJECT_COUNTS = (("n_true", "true objects"), ("n_pred", "predicted objects"),
                 ("splits", "split true objects"), ("merges", "merged predictions"),
                 ("missed", "missed (FN)"), ("extra", "extra (FP)"))


def _objects(run: RunData) -> dict[str, Any]:
    objects = run.evaluation.metrics.get("instances") if run.evaluation else None
    return objects if isinstance(objects, dict) else {}


def object_table(runs: list[RunData]) -> list[dict[str, Any]]:
    """The object scores of instance runs (`metrics.json["instances"]`), as `metric_table`
    gives the pixel ones: per score (AP@0.5, mean AP, PQ, SQ, DQ, AJI, AJI+) per image and
    pooled, then the counts of objects (totals over the images, `per image` their means),
    each run's value and its difference to run A (None where a run has no object scores);
    empty when no run has any."""
    summaries = [_objects(run) for run in runs]
    if not any(summaries):
        return []
    rows = []
    entries = [(key, name, False) for key, name, _ in HEADLINE] + \
        [(key, name, True) for key, name in OBJECT_COUNTS]
    for key, name, count in entries:
        row: dict[str, Any] = {"metric": name, "key": key, "count": count, "kinds": []}
        for part, title in OBJECT_KINDS:
            values: list[float | None] = []
            for summary in summaries:
                value = headline_value(summary.get(part, {}), key) if summary else None
                values.append(float(value) if isinstance(value, (int, float)) else None)
            first = values[0]
            deltas = [None if v is None or first is None else v - first for v in values[1:]]
            row["kinds"].append({"kind": title, "values": values, "deltas": deltas})
        rows.append(row)
    return rows


def joined_images(runs: list[RunData], metric: str) -> tuple[list[list[Any]], list[str]]:
    """Rows [image, value per run, difference(s)] for the images every run scored, and the
    column names; with two runs the difference is B - A, with more the spread (max - min)."""
    tables = []
    for run in runs:
        if run.evaluation is None or not run.evaluation.per_image:
            return [], []
        tables.append({row["image"]: row.get(metric) for row in run.evaluation.per_image})
    labels = run_labels(len(runs))
    common = [name for name in tables[0] if all(name in t for t in tables[1:])]
    rows = []
    for name in common:
        values = [t[name] if isinstance(t[name], (int, float)) and not math.isnan(t[name])
                  else None for t in tables]
        known = [v for v in values if v is not None]
        if len(runs) == 2:
            extra = [values[1] - values[0] if None not in values else None]
        else:
            extra = [max(known) - min(known) if len(known) == len(values) else None]
        rows.append([name, *values, *extra])
    columns = ["image", *[f"{metric} {label}" for label in labels],
               f"\u0394 {metric} B\u2212A" if len(runs) == 2 else f"{metric} spread"]
    return rows, columns


def disagreements(rows: list[list[Any]], count: int) -> list[int]:
    """Indices of the `count` rows with the largest absolute difference (last column)."""
    scored = [i for i, r in enumerate(rows) if r[-1] is not None]
    return sorted(scored, key=lambda i: -abs(rows[i][-1]))[:count]


def console_table(runs: list[RunData], labels: list[str], metrics: list[dict[str, Any]],
                  config: list[dict[str, Any]], rows: list[list[Any]], worst: list[int],
                  objects: list[dict[str, Any]] | None = None) -> str:
    """The comparison as plain text for the terminal (object scores first, for instance
    runs)."""
    lines = [f"{label}: {run.path}" for label, run in zip(labels, runs, strict=True)]
    width = max([28, *[len(f"{r['metric']} (per image)") + 1 for r in objects or []]])
    head = f"{'metric':<{width}}" + "".join(f"{label:>10}" for label in labels) + \
        "".join(f"{label + '-A':>10}" for label in labels[1:])
    lines += ["", head]
    for row in objects or []:
        for kind in row["kinds"]:
            fmt = "{:.1f}" if row["count"] else "{:.4f}"
            cells = "".join(f"{'-' if v is None else fmt.format(v):>10}"
                            for v in kind["values"])
            cells += "".join(f"{'-' if d is None else ('+' if d >= 0 else '') + fmt.format(d):>10}"
                             for d in kind["deltas"])
            lines.append(f"{row['metric'] + ' (' + kind['kind'] + ')':<{width}}{cells}")
    if objects:
        lines.append("")
    for row in metrics:
        for kind in row["kinds"]:
            cells = "".join(f"{'-' if v is None else f'{v:.4f}':>10}" for v in kind["values"])
            cells += "".join(f"{'-' if d is None else f'{d:+.4f}':>10}"
                             for d in kind["deltas"])
            lines.append(f"{row['metric'] + ' (' + kind['kind'] + ')':<{width}}{cells}")
    differ = [r for r in config if r["differs"]]
    if differ:
        lines += ["", "config differences:"]
        lines += [f"  {r['key']:<20} " + " | ".join(r["values"]) for r in differ[:20]]
    if worst:
        lines += ["", "images where the runs disagree most:"]
        for i in worst[:5]:
            row = rows[i]
            values = " ".join(f"{label} {v:.4f}" if v is not None else f"{label} -"
                              for label, v in zip(labels, row[1:-1], strict=True))
            lines.append(f"  {row[0]:<30} {values}")
    return "\n".join(lines)


def _default_out(runs: list[RunData]) -> Path:
    names = "-vs-".join(run.path.name for run in runs)[:80]
    return runs[0].path.parent / f"compare-{names}.html"


def _pictures(runs: list[RunData], labels: list[str], rows: list[list[Any]],
              chosen: list[int], options: ReportOptions, writer: AssetWriter
              ) -> tuple[dict[str, ImageAssets], str | None]:
    """Each run's predictions of the chosen images, or a note saying why there are none."""
    if not chosen:
        return {}, None
    if any(run.checkpoint is None for run in runs):
        return {}, "a run has no checkpoint: no pictures"
    first = runs[0]
    assert first.evaluation is not None
    dataset = first.evaluation.metrics.get("dataset") or first.config.get("dataset")
    csvfile = first.evaluation.metrics.get("csvfile", first.config.get("csvfile"))
    if not dataset or not Path(dataset).is_dir():
        return {}, f"dataset not found at {dataset}: no pictures"
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        return {}, f"the runs have different tasks ({', '.join(sorted(map(str, tasks)))}): " \
                   "no pictures"
    split = first.evaluation.metrics.get("split",
                                         "test" if first.evaluation.label == "test" else None)
    names = [rows[i][0] for i in chosen]
    try:
        pairs = dataset_pairs(dataset, csvfile, split, names)
        sources = [source_for(run.checkpoint, run.evaluation.metrics.get("inference")  # type: ignore[union-attr,arg-type]
                              if run.evaluation else None, label, run.config)
                   for run, label in zip(runs, labels, strict=True)]
        reading = reading_for(first.checkpoint, dataset, pairs)  # type: ignore[arg-type]
        assets = render_images(sources, pairs, reading, names, writer, set(),
                               str(options.metric), strict=strict_rule(first.evaluation.metrics))
    except UnetzooError as exc:
        return {}, f"no pictures: {exc}"
    return assets, None


def write_comparison(paths: list[Path | str], out: Path | None = None, *,
                     options: ReportOptions | None = None, overwrite: bool = False
                     ) -> Comparison:
    """Compare runs on one page (and as a console table).

    Args:
        paths: two or more run folders or evaluation folders.
        out: the page to write (default: `compare-<A>-vs-<B>.html` beside the first run);
            its pictures go into `<page stem>_files/` beside it.
        options: `gallery` is the number of images where the runs disagree most that are
            shown with every run's prediction; `metric` ranks them.
        overwrite: replace a page or folder of that name that unetzoo did not write.

    Returns:
        The page's path and the console table.

    Raises:
        RunError: fewer than two runs, a folder that is no run, or an existing page that is
            not unetzoo's without `overwrite`.
    """
    if len(paths) < 2:
        raise RunError("compare needs two or more runs")
    runs = [collect_run(p) for p in paths]
    options = resolved(options or ReportOptions(), [run.task for run in runs])
    metric = str(options.metric)
    labels = run_labels(len(runs))
    out = Path(out) if out else _default_out(runs)
    assets_dir = out.parent / f"{out.stem}_files"
    check_outputs(out, assets_dir, overwrite)
    config = config_table(runs)
    metrics = metric_table(runs)
    objects = object_table(runs)
    rows, columns = joined_images(runs, metric)
    chosen = disagreements(rows, options.gallery)
    note = None
    if not rows and all(run.evaluation for run in runs):
        note = "the runs' evaluations share no image: no per-image comparison"
    with staged_assets(assets_dir) as stage:
        pictures, picture_note = _pictures(runs, labels, rows, chosen, options,
                                           AssetWriter(stage, assets_dir.name))
        facts = [model_facts(run.checkpoint, run.checkpoint.preprocessing.img_size
                             if run.checkpoint else None) for run in runs]
        data = None
        if rows:
            data = {"columns": columns, "rows": rows, "sort": columns[-1],
                    "pictured": {n: i for i, n in enumerate(pictures)},
                    "assets": [{"name": n, **a.to_json()} for n, a in pictures.items()],
                    "page_rows": PAGE_ROWS, "sources": labels, "metric": metric,
                    "score_columns": list(range(1, len(runs) + 1)),
                    "count_columns": [c for c in columns if c.split(" ")[0] in COUNT_COLUMNS],
                    "instance": all(run.task == "instance" for run in runs)}
        context = {
            "generator": GENERATOR, "runs": runs, "labels": labels,
            "colors": [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(runs))],
            "facts": facts, "config": config, "metrics": metrics, "options": options,
            "objects": objects, "kinds": kinds_legend(),
            "instance": all(run.task == "instance" for run in runs),
            "ap_curve": ap_curve_svg([(label, _objects(run)) for label, run in
                                      zip(labels, runs, strict=True) if _objects(run)]),
            "curves": curves_svg([(f"{label} {run.name}", run.history, run.best_epoch)
                                  for label, run in zip(labels, runs, strict=True)]),
            "disagree": [{**card(rows[i][0], pictures, dict(zip(labels, rows[i][1:],
                                                                strict=False)),
                                 metric), "row": rows[i]} for i in chosen],
            "columns": columns, "note": note or picture_note,
            "data": page_json(data) if data else None,
            "created": time.strftime("%Y-%m-%d %H:%M"),
        }
        page = _environment().get_template("compare.html.j2").render(**context)
    atomic_write_text(out, page)
    text = console_table(runs, labels, metrics, config, rows, chosen, objects)
    return Comparison(out, text)


def compare_runs(paths: list[Path | str], metric: str | None = None) -> str:
    """The console table of a comparison, without writing a page (`metric`: the per-image
    column the disagreements are ranked by; default the runs' task's, `page.default_metric`).
    """
    runs = [collect_run(p) for p in paths]
    chosen = str(resolved(ReportOptions(metric=metric), [run.task for run in runs]).metric)
    rows, _ = joined_images(runs, chosen)
    return console_table(runs, run_labels(len(runs)), metric_table(runs), config_table(runs),
                         rows, disagreements(rows, 5), object_table(runs))
