"""Device, precision and memory-format choices, resolved once from the hardware.

`auto` picks the fast settings where the hardware supports them: bfloat16 autocast on CPUs
with native bf16 instructions (AVX512-BF16 or AMX) and on GPUs that support it, float16
with a gradient scaler on older GPUs, float32 elsewhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import torch

from ..errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@cache
def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists AVX512-BF16 or AMX-BF16."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 for `device`; `auto` picks the fastest the hardware supports."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 is for GPUs; on a CPU use bf16 or fp32")
    return precision


def resolve_channels_last(channels_last: bool | None, device: torch.device, precision: str
                          ) -> bool:
    """channels_last (NHWC) by default where oneDNN / cuDNN gain from it: CUDA, and CPUs
    running bf16."""
    if channels_last is not None:
        return channels_last
    return device.type == "cuda" or precision == "bf16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


@dataclass(frozen=True)
class Runtime:
    """Resolved device, precision and memory format for one run."""

    device: torch.device
    precision: str
    channels_last: bool

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto",
                channels_last: bool | None = None, threads: int | None = None) -> Runtime:
        if threads:
            torch.set_num_threads(threads)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        return cls(dev, prec, resolve_channels_last(channels_last, dev, prec))

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        return (f"{self.device.type}, {self.precision}"
                f"{', channels-last' if self.channels_last else ''}, "
                f"{torch.get_num_threads()} threads")
