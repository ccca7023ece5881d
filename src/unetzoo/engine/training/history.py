"""A run's history as people read it: `metrics.csv` (one row per epoch) and `curves.png`."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ...artefacts.runs import CURVES, HISTORY
from ...fileio import atomic_write_text
from ...viz import save_curves


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """`metrics.csv` (one row per epoch, every key seen as a column) and `curves.png`."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / HISTORY, out.getvalue())
    save_curves(run_dir / CURVES, history)
