"""Shared by the speed benchmarks: machine facts, markdown tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from unetzoo.engine.runtime import cpu_bf16_units
from unetzoo.fileio import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU, cores, bf16 units, load average (the machine may be shared) and versions."""
    model = next((ln.partition(":")[2].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "bf16_units": cpu_bf16_units(),
            "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
            "torch": torch.__version__}


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
