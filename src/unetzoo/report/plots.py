"""Training curves for the pages: matplotlib figures as SVG data URIs (no files, no network).

One figure has three panels: loss, validation metrics and learning rate per epoch. Several
runs share the axes (one colour per run) for a comparison.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

RUN_COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4",
              "#57606a")
_METRIC_STYLES = {"dice": "-", "iou": "--", "mdice": ":", "miou": "-."}


def _points(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value) and \
                isinstance(row.get("epoch"), (int, float)):
            xs.append(float(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def metric_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    """The validation metric columns of a history (`val_*` except losses), in file order."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k.startswith("val_") and "loss" not in k and k not in keys]
    return keys


def loss_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k.endswith("loss") and k not in keys]
    return keys


STYLE = {"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported when a plot is made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg_uri(fig: Any) -> str:
    """`fig` laid out, as a `data:image/svg+xml;base64,...` URI; the figure is closed."""
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def curves_svg(runs: Sequence[tuple[str, Sequence[dict[str, Any]], int | None]]) -> str | None:
    """A data URI of the curves of one or more runs, or None when no run has a history.

    Args:
        runs: (label, history rows as in metrics.csv, best epoch or None) per run.

    Returns:
        `data:image/svg+xml;base64,...`: loss (train, and validation when recorded), the
        validation metrics (dice solid, iou dashed, ...) and the learning rate (log scale);
        the best epoch of each run is a dotted vertical line.
    """
    runs = [r for r in runs if r[1]]
    if not runs:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    several = len(runs) > 1
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
        loss_ax, metric_ax, lr_ax = axes
        for index, (label, history, best) in enumerate(runs):
            color = RUN_COLORS[index % len(RUN_COLORS)]
            prefix = f"{label}: " if several else ""
            for key in loss_columns(history):
                xs, ys = _points(history, key)
                if xs:
                    loss_ax.plot(xs, ys, color=color if several else None,
                                 linestyle="--" if key.startswith("val") else "-",
                                 label=prefix + key.replace("_", " "), marker="." if
                                 len(xs) < 30 else None)
            keys = metric_columns(history)
            if several:  # one colour per run already: the two headline metrics only
                keys = [k for k in keys if k in ("val_dice", "val_iou")] or keys
            for key in keys:
                xs, ys = _points(history, key)
                base = key.removeprefix("val_").removesuffix("_per_image")
                if xs:
                    metric_ax.plot(xs, ys, color=color if several else None,
                                   linestyle=_METRIC_STYLES.get(base, "-"),
                                   alpha=0.55 if key.endswith("_per_image") else 1.0,
                                   label=prefix + key.removeprefix("val_").replace("_", " "),
                                   marker="." if len(xs) < 30 else None)
            xs, ys = _points(history, "lr")
            if xs:
                lr_ax.plot(xs, ys, color=color, label=label if several else None)
            if best is not None:
                for ax in axes:
                    ax.axvline(best, color=color, linestyle=":", linewidth=1, alpha=0.8)
        loss_ax.set_title("loss")
        metric_ax.set_title("validation (dotted line: best epoch)")
        lr_ax.set_title("learning rate")
        if any(_points(h, "lr")[1] and min(_points(h, "lr")[1]) > 0 for _, h, _ in runs):
            lr_ax.set_yscale("log")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, frameon=False)
        return _svg_uri(fig)


def _threshold_points(part: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for entry in part.get("per_threshold", []):
        t, value = entry.get("threshold"), entry.get(key)
        if isinstance(t, (int, float)) and isinstance(value, (int, float)) and \
                0.5 - 1e-9 <= t <= 0.95 + 1e-9 and not math.isnan(value):
            xs.append(float(t))
            ys.append(float(value))
    return xs, ys


def ap_curve_svg(runs: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """A data URI of AP against the IoU threshold (0.5 to 0.95) of one or more evaluations'
    objects, or None when none has per-threshold scores.

    Args:
        runs: (label, `metrics.json["instances"]`) per run: its `mean_over_images` and
            `pooled` parts with their `per_threshold` lists.

    Returns:
        `data:image/svg+xml;base64,...`: AP per image (the mean over images, solid) and
        pooled (dashed) for each run; with one run also F1 per image (dotted). The legend
        gives each curve's mean over the thresholds (the mean AP).
    """
    curves = [(label, summary) for label, summary in runs
              if _threshold_points(summary.get("pooled", {}), "ap")[0]]
    if not curves:
        return None
    plt = _pyplot()
    several = len(curves) > 1
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.6 if not several else 6.4, 3.3))
        for index, (label, summary) in enumerate(curves):
            color = RUN_COLORS[index % len(RUN_COLORS)]
            prefix = f"{label}: " if several else ""
            lines = [("mean_over_images", "ap", "AP per image", "-"),
                     ("pooled", "ap", "AP pooled", "--")]
            if not several:
                lines.append(("mean_over_images", "f1", "F1 per image", ":"))
            for part, key, name, style in lines:
                xs, ys = _threshold_points(summary.get(part, {}), key)
                if xs:
                    mean = sum(ys) / len(ys)
                    ax.plot(xs, ys, color=color, linestyle=style, marker=".",
                            alpha=0.6 if key == "f1" else 1.0,
                            label=f"{prefix}{name} (mean {mean:.3f})")
        ax.set_xlabel("IoU threshold t (a match needs IoU "
                      f"{(curves[0][1].get('conventions') or {}).get('threshold_rule', '>=')}"
                      " t)")
        ax.set_ylabel("AP = TP / (TP + FP + FN)")
        ax.set_xlim(0.48, 0.97)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
        ax.legend(fontsize=7, frameon=False)
        return _svg_uri(fig)
