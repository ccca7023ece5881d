"""Device, precision, memory format, compilation and backend, resolved once from the hardware.

`auto` picks the fast settings where the hardware supports them: bfloat16 autocast on CPUs
with native bf16 instructions (AVX512-BF16 or AMX) and on GPUs that support it, float16
with a gradient scaler on older GPUs, float32 elsewhere. Inference can also run on an
exported graph: `onnxruntime` (float32) or `openvino` (bf16 by default where the CPU has it,
as OpenVINO itself chooses), both on the CPU. Backend `auto` (the default for inference from
a checkpoint or a model name) becomes `openvino` on CPUs where it is installed and the model
converts, `torch` otherwise (`engine.models_io.choose_backend`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch

from .errors import ConfigError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 instructions."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_bf16_units() -> str:
    """What runs bf16 matrix products on this CPU: `amx`, `avx512_bf16` or `none`."""
    flags = cpu_flags()
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"


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


def resolve_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """fp32, bf16 or fp16 for `device` and `backend`; `auto` picks the fastest the hardware
    (and the backend) supports."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"the onnxruntime backend runs float32 graphs, not {precision}; "
                              "use --backend openvino or torch for bf16")
        return "fp32"
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
    """Resolved device, precision, memory format, compilation and backend for one run.

    `backend` is where inference runs: `torch` (eager, or `compile` for torch.compile), or an
    exported graph in `onnxruntime` or `openvino` (CPU only; the model is exported on the fly
    when given as a PyTorch model), or `auto`: not decided yet (precision and memory format
    are those torch would use); `engine.models_io` decides when it opens a model, and a
    PyTorch module handed to a `Predictor` runs in torch. Training always runs in torch.
    `torch_options` records that `--compile` or `--channels-last` / `--no-channels-last`
    were given: torch options, so `auto` then means torch.
    """

    device: torch.device
    precision: str
    channels_last: bool
    compile: bool = False
    backend: str = "torch"
    torch_options: bool = False

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto",
                channels_last: bool | None = None, threads: int | None = None, *,
                compile: bool = False, backend: str = "torch") -> Runtime:
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
        dev = resolve_device(device)
        if backend not in ("torch", "auto"):
            if dev.type != "cpu":
                raise ConfigError(f"the {backend} backend runs on the CPU; use --device cpu "
                                  "or --backend torch")
            if compile or channels_last:
                raise ConfigError(f"--compile and --channels-last are torch options; the "
                                  f"{backend} backend optimises the graph itself")
        if threads:
            torch.set_num_threads(threads)
        prec = resolve_precision(precision, dev, backend)
        memory = resolve_channels_last(channels_last, dev, prec) and backend in ("torch", "auto")
        return cls(dev, prec, memory, compile, backend,
                   torch_options=compile or channels_last is not None)

    def for_backend(self, backend: str) -> Runtime:
        """This runtime running in `backend` (decided from `auto`): exported graphs have no
        memory format, and onnxruntime runs float32."""
        if backend == self.backend:
            return self
        if backend == "torch":
            return replace(self, backend=backend)
        precision = "fp32" if backend == "onnxruntime" else self.precision
        return replace(self, backend=backend, precision=precision, channels_last=False)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        where = "" if self.backend == "torch" else f"{self.backend}, "
        return (f"{where}{self.device.type}, {self.precision}"
                f"{', channels-last' if self.channels_last else ''}"
                f"{', compiled' if self.compile else ''}, {torch.get_num_threads()} threads")
