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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    several = len(runs) > 1
    with plt.rc_context({"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}):
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
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg")
        plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
