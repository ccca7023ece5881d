"""What machine a run trained on: one line in `train.log`, read back by the report."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..runtime import cpu_bf16_units
from ..version import __version__


def machine_info() -> dict[str, Any]:
    """CPU model, cores, bf16 units, GPUs, load average and versions of this machine."""
    try:
        cpu = next((ln.partition(":")[2].strip() for ln in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        cpu = ""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {"cpu": cpu or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "bf16_units": cpu_bf16_units(), "gpus": gpus,
            "threads": torch.get_num_threads(), "load_average": load,
            "torch": torch.__version__, "unetzoo": __version__,
            "python": platform.python_version(), "system": platform.system()}


def machine_line(info: dict[str, Any] | None = None) -> str:
    """`machine_info` as one line, e.g. "Intel Xeon ..., 2 cores (bf16: avx512_bf16),
    no GPU, load 3.1, torch 2.13.0, unetzoo 0.1.0"."""
    info = info or machine_info()
    gpus = ", ".join(info["gpus"]) if info["gpus"] else "no GPU"
    load = f", load {info['load_average'][0]:.1f}" if info["load_average"] else ""
    return (f"{info['cpu']}, {info['cores']} cores (bf16: {info['bf16_units']}), {gpus}"
            f"{load}, torch {info['torch']}, unetzoo {info['unetzoo']}")
