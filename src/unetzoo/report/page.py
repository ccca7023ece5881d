"""`report.html`: one page about a run (or an evaluation), written beside its files.

The page is self-contained HTML (styles, scripts and curves inline, no network) with its
pictures in a `report/` folder beside it, so it opens from the file system in any browser.
Large evaluations stay fast: the per-image table is data rendered one page of rows at a
time, and pictures exist for a bounded set of images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..artefacts.checkpoint import Checkpoint
from ..config import TrainConfig
from ..errors import RunError, UnetzooError
from ..fileio import atomic_folder, atomic_write_text
from ..metrics import METRIC_NAMES
from ..models import count_parameters, model_card
from ..viz import class_colors
from .collect import RunData, collect_run
from .gallery import (
    MISMATCH,
    AssetWriter,
    ImageAssets,
    choose_images,
    dataset_pairs,
    reading_for,
    render_images,
    source_for,
)
from .objects import COUNT_COLUMNS, kinds_legend, objects_section, table_columns
from .objects import DEFAULT_METRIC as OBJECT_METRIC
from .plots import ap_curve_svg, curves_svg

log = logging.getLogger("unetzoo")

GENERATOR = "unetzoo report"
ASSETS = "report"  # the pictures' folder beside report.html
MARKER = ".unetzoo-report"  # in an assets folder unetzoo wrote (safe to replace)
PAGE_ROWS = 50


@dataclass(frozen=True)
class ReportOptions:
    """What the page shows.

    gallery: the K worst and K best images by `metric` get pictures in the gallery (with
        side outputs or attention maps where the model has them).
    overlays: every image gets pictures (rows open them) when the evaluation has at most
        this many images; beyond, only the gallery's do.
    metric: the per-image metric that ranks images (higher is better); None: the task's
        (`default_metric`: mean AP for instance models, Dice for the others).
    """

    gallery: int = 8
    overlays: int = 100
    metric: str | None = None

    def __post_init__(self) -> None:
        if self.gallery < 0 or self.overlays < 0:
            raise RunError(f"--gallery and --overlays must be >= 0, got {self.gallery} and "
                           f"{self.overlays}")


def default_metric(task: str | None) -> str:
    """The per-image metric images are ranked by when none is asked: the mean AP over IoU
    0.5:0.95 of an instance model's objects (the DSB 2018 score of an image), else Dice."""
    return OBJECT_METRIC if task == "instance" else "dice"


def resolved(options: ReportOptions, tasks: Sequence[str | None]) -> ReportOptions:
    """`options` with its metric decided: as asked, else the default of the runs' task
    (Dice when the runs' tasks differ)."""
    if options.metric:
        return options
    task = tasks[0] if tasks and all(t == tasks[0] for t in tasks) else None
    return replace(options, metric=default_metric(task))


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("unetzoo.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["duration"] = format_duration
    return env


def format_number(value: Any, digits: int = 4) -> str:
    """A table cell: floats with `digits` decimals, large counts grouped, NaN as a dash."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def page_json(data: Any) -> str:
    """JSON safe inside a `<script type="application/json">` element."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _finite(value: Any) -> Any:
    """NaN and infinities become None (JSON null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def is_generated(html: Path) -> bool:
    """True when `html` is a page unetzoo wrote (it carries the generator marker)."""
    try:
        with html.open(encoding="utf-8", errors="replace") as fh:
            return f'content="{GENERATOR}"' in fh.read(4096)
    except OSError:
        return False


def check_outputs(html: Path, assets: Path, overwrite: bool) -> None:
    """Refuse to replace a page or an assets folder unetzoo did not write, unless
    `overwrite`. A page unetzoo wrote is made again from the run's files: replacing it
    loses nothing."""
    if overwrite:
        return
    if html.exists() and not is_generated(html):
        raise RunError("exists and was not written by unetzoo; pass --overwrite to replace it "
                       "or choose another --out", html)
    if assets.exists() and not (assets / MARKER).is_file():
        raise RunError("exists and was not written by unetzoo; pass --overwrite to replace it "
                       "or choose another --out", assets)


@contextmanager
def staged_assets(assets: Path) -> Iterator[Path]:
    """A fresh folder to write the pictures into; on success it replaces `assets` (the old
    folder is removed only once the new one is in place: `fileio.atomic_folder`)."""
    with atomic_folder(assets, overwrite=True) as stage:
        (stage / MARKER).write_text("written by unetzoo report; replaced on every report\n")
        yield stage


def model_facts(checkpoint: Checkpoint | None, img_size: int | None) -> dict[str, Any]:
    """Model card line, parameters and GFLOPs of one forward pass at `img_size`
    (`engine.bench.count_flops`, float32, on a random input)."""
    if checkpoint is None:
        return {}
    from ..engine.bench import count_flops

    spec = checkpoint.model_spec
    facts: dict[str, Any] = {"name": spec["name"], "kwargs": spec.get("kwargs", {}),
                             "in_channels": spec["in_channels"],
                             "num_classes": spec["num_classes"]}
    try:
        card = model_card(spec["name"])
        facts.update(paper=card.paper, year=card.year, adds=card.adds, summary=card.summary)
    except UnetzooError:
        pass
    if checkpoint.instance:
        facts["instance"] = instance_facts(checkpoint.instance)
    model = checkpoint.build_model()
    facts["params"] = count_parameters(model)
    if img_size:
        x = torch.randn(1, spec["in_channels"], img_size, img_size,
                        generator=torch.Generator().manual_seed(0))
        facts["gflops"] = count_flops(model, x) / 1e9
        facts["flops_size"] = img_size
    return facts


def instance_facts(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance model's decoding in words: its representation, the thresholds the run
    chose and on what (`Checkpoint.instance`)."""
    thresholds = instance.get("thresholds") or {}
    chosen = instance.get("chosen") or {}
    parts = [f"{k.replace('_', ' ')} {'> ' if k != 'min_size' else ''}{v:g}"
             f"{' px' if k == 'min_size' else ''}" for k, v in thresholds.items()
             if isinstance(v, (int, float))]
    basis = ""
    if chosen.get("images"):
        scores = ", ".join(f"{name} {chosen[key]:.4f}" for key, name in
                           (("mean_ap", "mean AP"), ("ap50", "AP@0.5"))
                           if isinstance(chosen.get(key), (int, float)))
        basis = (f"chosen on {chosen['images']} {chosen.get('split', 'validation')} "
                 f"image(s) by {chosen.get('objective', 'mean_ap')}" +
                 (f" ({scores})" if scores else ""))
    return {"representation": instance.get("representation"),
            "thresholds": ", ".join(parts), "basis": basis}


def config_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    """(key, value, changed from the default) for every config key, changed ones first."""
    defaults = TrainConfig().to_dict()
    rows = [{"key": k, "value": _show(v), "changed": k in defaults and v != defaults[k]}
            for k, v in config.items()]
    return sorted(rows, key=lambda r: not r["changed"])


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else "–"
    return "–" if value is None else str(value)


def class_table(run: RunData) -> list[dict[str, Any]]:
    """Name and colour (hex) of each class the page shows, background first."""
    if run.checkpoint is None or run.checkpoint.task == "instance":
        return []  # objects have ids, not classes
    checkpoint = run.checkpoint
    classes = int(checkpoint.model_spec["num_classes"])
    colors = class_colors(max(classes, 2) + 1, checkpoint.class_colors)
    if checkpoint.task == "binary":
        names = ["background", *checkpoint.class_names[-1:]]
    elif checkpoint.task == "multilabel":
        names = ["none", *checkpoint.class_names]
    else:
        names = list(checkpoint.class_names)
    return [{"name": n, "color": hex_color(colors[i % len(colors)]), "index": i}
            for i, n in enumerate(names)]


def hex_color(rgb: Any) -> str:
    """`(r, g, b)` in 0..255 -> `#rrggbb`."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def confusion(summary: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    """The confusion matrix with row-normalised shares (recall per true class)."""
    matrix = summary.get("confusion_matrix")
    if not matrix:
        return None
    rows = []
    for i, row in enumerate(matrix):
        total = sum(row)
        rows.append({"name": names[i] if i < len(names) else str(i), "total": total,
                     "cells": [{"count": c, "share": c / total if total else 0.0} for c in row]})
    return {"names": [names[i] if i < len(names) else str(i) for i in range(len(matrix))],
            "rows": rows}


def dataset_section(run: RunData) -> dict[str, Any]:
    config = run.config
    decision = run.dataset_json
    return {"root": config.get("dataset"), "csvfile": config.get("csvfile"),
            "task": run.task, "classes": class_table(run),
            "channels": run.checkpoint.model_spec["in_channels"] if run.checkpoint else None,
            "splits": run.log.splits, "decision": _flatten(decision) if decision else [],
            "preprocessing": run.checkpoint.preprocessing.to_dict() if run.checkpoint
            else None}


def _flatten(data: Any, prefix: str = "", limit: int = 60) -> list[tuple[str, str]]:
    """A JSON document as (dotted key, value) lines, at most `limit` of them."""
    out: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list) and value and any(isinstance(v, (dict, list))
                                                        for v in value):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        else:
            out.append((key, _show(value)))

    walk(data, prefix)
    return out


def _table(run: RunData, assets: dict[str, ImageAssets], metric: str) -> dict[str, Any]:
    evaluation = run.evaluation
    assert evaluation is not None
    columns = evaluation.metric_names
    if run.task == "instance" or "instances" in evaluation.metrics:
        columns = table_columns(columns, metric)  # of ~90: the scores people read
    rows = [[row["image"], *[row.get(c) for c in columns]] for row in evaluation.per_image]
    names = list(assets)
    return {"columns": ["image", *columns], "rows": rows, "sort": metric,
            "count_columns": [c for c in columns if c in COUNT_COLUMNS],
            "pictured": {name: i for i, name in enumerate(names)},
            "assets": [{"name": n, **assets[n].to_json()} for n in names],
            "page_rows": PAGE_ROWS}


def build_gallery(run: RunData, options: ReportOptions, writer: AssetWriter
                  ) -> tuple[dict[str, ImageAssets], list[int], list[int], str | None]:
    """Pictures of the chosen images: (assets by name, worst rows, best rows, a note for
    the page when there are none or fewer than asked)."""
    evaluation = run.evaluation
    if evaluation is None or not evaluation.per_image:
        return {}, [], [], None
    rows = evaluation.per_image
    assert options.metric is not None  # decided by `resolved`
    if options.metric not in evaluation.metric_names:
        raise RunError(f"--metric {options.metric!r} is not a column of per_image.csv "
                       f"(columns: {', '.join(evaluation.metric_names)})",
                       evaluation.folder / "per_image.csv")
    worst, best, pictured = choose_images(rows, options.metric, options.gallery,
                                          options.overlays)
    if run.checkpoint is None:
        return {}, worst, best, "no checkpoint found: the page has no pictures"
    dataset = evaluation.metrics.get("dataset") or run.config.get("dataset")
    csvfile = evaluation.metrics.get("csvfile", run.config.get("csvfile")) \
        if "dataset" in evaluation.metrics else run.config.get("csvfile")
    if not dataset or not Path(dataset).is_dir():
        return {}, worst, best, f"dataset not found at {dataset}: the page has no pictures"
    split = evaluation.metrics.get("split", "test" if evaluation.label == "test" else None)
    names = [rows[i]["image"] for i in pictured]
    try:
        pairs = dataset_pairs(dataset, csvfile, split, names)
        source = source_for(run.checkpoint, evaluation.metrics.get("inference"), "model",
                            run.config)
        reading = reading_for(run.checkpoint, dataset, pairs)
        gallery_names = {rows[i]["image"] for i in worst + best}
        order = [rows[i]["image"] for i in worst + best] + \
            [n for n in names if n not in gallery_names]
        assets = render_images([source], pairs, reading, order, writer, gallery_names,
                               options.metric, strict=strict_rule(evaluation.metrics))
    except UnetzooError as exc:
        return {}, worst, best, f"no pictures: {exc}"
    missing = len(names) - len(assets)
    note = f"{missing} image(s) not found in {dataset}: shown without pictures" if missing \
        else None
    return assets, worst, best, note


def strict_rule(metrics: dict[str, Any]) -> bool:
    """Whether an evaluation matched objects at IoU > t (`strict`) rather than >= t."""
    objects = metrics.get("instances")
    return bool(objects.get("strict")) if isinstance(objects, dict) else False


def write_report(path: Path | str, *, evaluation: Path | str | None = None,
                 options: ReportOptions | None = None, overwrite: bool = False) -> Path:
    """Write `report.html` (and its pictures in `report/`) into a run or evaluation folder.

    Args:
        path: a run folder or an evaluation folder (see `collect.collect_run`).
        evaluation: for a run folder, the evaluation to show (default `test/`, else the
            newest `eval-*`).
        options: gallery size, overlay bound and ranking metric (default: the task's,
            `default_metric`).
        overwrite: replace a `report.html` / `report/` that unetzoo did not write.

    Returns:
        The path of the page.

    Raises:
        RunError: `path` is not a run or evaluation folder, or an existing page is not
            unetzoo's and `overwrite` is not set.
    """
    started = time.perf_counter()
    run = collect_run(path, evaluation)
    options = resolved(options or ReportOptions(), [run.task])
    html = run.path / "report.html"
    assets_dir = run.path / ASSETS
    check_outputs(html, assets_dir, overwrite)
    with staged_assets(assets_dir) as stage:
        pictures, worst, best, note = build_gallery(run, options, AssetWriter(stage, ASSETS))
        page = render_report(run, options, pictures, worst, best, note)
    atomic_write_text(html, page)
    log.info(f"report: {html} ({len(pictures)} image(s) pictured, "
             f"{time.perf_counter() - started:.1f} s)")
    return html


def render_report(run: RunData, options: ReportOptions, pictures: dict[str, ImageAssets],
                  worst: list[int], best: list[int], note: str | None) -> str:
    """The HTML of one run's page."""
    evaluation = run.evaluation
    img_size = run.checkpoint.preprocessing.img_size if run.checkpoint else \
        run.config.get("img_size")
    dataset = dataset_section(run)
    class_names = [c["name"] for c in dataset["classes"]]
    gallery = None
    if evaluation is not None and evaluation.per_image:
        rows = evaluation.per_image
        def make(i: int) -> dict[str, Any]:
            return {**card(rows[i]["image"], pictures, {"model": rows[i].get(options.metric)},
                           options.metric), "row": rows[i]}

        gallery = {
            "worst": [make(i) for i in worst],
            "best": [make(i) for i in best],
            "has_maps": any(a.maps for a in pictures.values()),
        }
    data = _table(run, pictures, str(options.metric)) if evaluation and \
        evaluation.per_image else None
    objects = objects_section(evaluation.metrics if evaluation else None)
    if data is not None:
        data.update(sources=["model"], metric=options.metric, instance=objects is not None)
    context = {
        "generator": GENERATOR, "title": run.name, "run": run, "options": options,
        "model": model_facts(run.checkpoint, img_size), "config": config_rows(run.config),
        "dataset": dataset, "curves": curves_svg([(run.name, run.history, run.best_epoch)]),
        "evaluation": evaluation, "metric_names": METRIC_NAMES,
        "summary": evaluation.metrics if evaluation else None,
        "confusion": confusion(evaluation.metrics, class_names) if evaluation else None,
        "gallery": gallery, "note": note, "data": page_json(data) if data else None,
        "objects": objects, "kinds": kinds_legend(),
        "ap_curve": ap_curve_svg([(run.name, evaluation.metrics["instances"])])
        if objects and evaluation else None,
        "epochs": len(run.history), "created": time.strftime("%Y-%m-%d %H:%M"),
        "others": [p.name for p in run.other_evaluations],
    }
    return _environment().get_template("report.html.j2").render(**context)


def card(name: str, pictures: dict[str, ImageAssets], scored: dict[str, Any], metric: str
         ) -> dict[str, Any]:
    """A gallery card: the image's pictures and a warning for each source whose
    re-predicted `metric` differs from the evaluation's (`scored`: source label -> value)."""
    assets = pictures.get(name)
    mismatch = []
    if assets is not None:
        for label, again in assets.scores.items():
            value = scored.get(label)
            if isinstance(value, (int, float)) and not math.isnan(value) and \
                    abs(again - value) > MISMATCH:
                mismatch.append(f"{label}: re-predicted {metric} {again:.4f}")
    return {"name": name, "assets": assets, "mismatch": mismatch}


def write_page_safely(what: str, write: Callable[[], Path]) -> Path | None:
    """Run a page writer after training or evaluation: a failure logs one warning line and
    never loses the run."""
    try:
        return write()
    except Exception as exc:  # the run's results matter more than its page
        log.warning(f"report: {what} not written ({type(exc).__name__}: {exc})")
        return None
