"""Shared by the speed benchmarks: machine facts, markdown tables, JSON results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unetzoo.fileio import atomic_write_text
from unetzoo.report.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU, cores, bf16 units, load average (the machine may be shared) and versions."""
    info = machine_info()
    return {k: info[k] for k in ("cpu", "cores", "bf16_units", "threads", "load_average",
                                 "torch")}


def markdown(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(name: str, data: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path
