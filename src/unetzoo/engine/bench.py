"""Model speed on this machine: parameters, FLOPs, latency, throughput, peak memory, and the
fraction of the machine's measured peak FLOP rate a model reaches.

The peak is measured, not looked up: the best rate of a large matrix product or a wide 3 x 3
convolution in the precision the model runs in (float32, or bfloat16 / float16 for mixed
precision), with the threads PyTorch uses, cached for the process. On a busy machine it is
measured low (and fractions come out high): compare fractions from quiet runs. FLOPs are
counted by PyTorch's `FlopCounterMode` on the eager float32 model (2 per multiply-add;
convolutions, matrix products and attention).
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..artefacts.checkpoint import Checkpoint
from ..artefacts.references import resolve_model
from ..data.transforms import Preprocessing
from ..errors import CheckpointError, ConfigError
from ..losses import build_loss
from ..models import count_parameters, create_model, list_models
from ..runtime import DTYPES, Runtime
from ..schedules import build_optimizer
from .inference.backends import ExportedModule
from .inference.opening import open_checkpoint, open_model
from .inference.predictor import InferenceOptions, Predictor
from .training.step import OptimizerStep


@cache
def peak_flops(device: str, precision: str, threads: int) -> float:
    """The best FLOP/s this machine reached in `precision` on `device` with `threads`
    PyTorch threads (cached per process): the faster of a 2048 x 2048 matrix product and a
    3 x 3, 256-channel convolution on a 4 x 256 x 64 x 64 channels-last batch (the kernels
    these models spend their time in), best of three runs each."""
    dtype = torch.float32 if precision == "fp32" else DTYPES[precision]
    n = 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device, dtype).eval()
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(4, 256, 64, 64, device=device).to(dtype).contiguous(
        memory_format=torch.channels_last)
    probes = [(lambda: torch.mm(a, b), 2 * n**3),
              (lambda: conv(x), 2 * 4 * 256 * 256 * 9 * 64 * 64)]
    best = 0.0
    with torch.inference_mode():
        for run, flops in probes:
            run()
            for seconds in _times(run, 0, 3, torch.device(device)):
                best = max(best, flops / seconds)
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass of `model` on `x` (float32, CPU)."""
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated CUDA memory, or the peak resident set of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class BenchResult:
    """One measured setting (per-image FLOPs; times per forward pass of `batch` images)."""

    model: str
    mode: str
    backend: str
    precision: str
    channels_last: bool
    compile: bool
    size: int
    batch: int
    threads: int
    params: int
    gflops: float
    latency_ms: float
    latency_p90_ms: float
    images_per_s: float
    peak_memory_mb: float
    tflops: float
    peak_tflops: float
    fraction_of_peak: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        setting = (f"{self.backend}, {self.precision}"
                   f"{', channels-last' if self.channels_last else ''}"
                   f"{', compiled' if self.compile else ''}, {self.threads} threads")
        return "\n".join([
            f"{self.model} {self.mode} at {self.size} x {self.size}, batch {self.batch} "
            f"({setting})",
            f"  parameters     {self.params:,}" if self.params else
            "  parameters     unknown (a network of another tool)",
            f"  GFLOPs/image   {self.gflops:.2f} (forward pass"
            f"{'; a training step counts 3x' if self.mode == 'train' else ''})" if self.gflops
            else "  GFLOPs/image   unknown",
            f"  latency        median {self.latency_ms:.1f} ms, p90 {self.latency_p90_ms:.1f} ms"
            f" per batch",
            f"  throughput     {self.images_per_s:.2f} images/s",
            f"  peak memory    {self.peak_memory_mb:.0f} MB",
            f"  compute        {self.tflops:.3f} TFLOP/s = {100 * self.fraction_of_peak:.1f}% of "
            f"the measured {self.precision} peak ({self.peak_tflops:.2f} TFLOP/s)"
            if self.gflops else "  compute        unknown (no FLOP count)",
        ])


@dataclass
class BenchModel:
    """A model to time: the module to run, its eager float32 twin (parameters and FLOPs),
    a display name, the runtime it runs in (backend decided) and a line saying why."""

    module: nn.Module
    eager: nn.Module | None
    name: str
    runtime: Runtime
    note: str


def resolve_bench_model(model: str, runtime: Runtime, preset: str | None = None,
                        in_channels: int = 3, num_classes: int = 1, size: int = 256,
                        train: bool = False, model_args: dict[str, Any] | None = None
                        ) -> BenchModel:
    """The model `unetzoo bench` times: a registered architecture name (built with
    `preset`, then `model_args`; weights seeded with 0, so its OpenVINO conversion is cached
    across runs), or any trained model a user can name (a checkpoint, a run folder, a model
    folder, a shipped name, a package, an exported file: the one door,
    `engine.inference.opening.open_model`), in the runtime's backend (`auto`: see
    `decide_backend`; training always runs in torch).

    Raises:
        ConfigError: neither a trained model nor a registered name; a backend that cannot
            run it; training asked of a model without trainable weights.
        CheckpointError: an unreadable model file.
    """
    torch_only = "training runs in torch" if train else None
    if model in list_models() and not Path(model).exists():
        torch.manual_seed(0)
        net = create_model(model, in_channels, num_classes, preset=preset, **(model_args or {}))
        task = "binary" if num_classes == 1 else "multiclass"
        names = tuple(f"class{i}" for i in range(max(num_classes, 2) if num_classes > 1 else 1))
        pre = Preprocessing(in_channels, (0.0,) * in_channels, (1.0,) * in_channels, size)
        checkpoint = Checkpoint(net.unetzoo_spec, task, names, pre,  # type: ignore[arg-type]
                                net.state_dict())
        opened = open_checkpoint(checkpoint, runtime, torch_only=torch_only)
        return BenchModel(opened.module, checkpoint.build_model(),
                          model + (f" ({preset})" if preset else ""), opened.runtime,
                          opened.note)
    try:
        reference = resolve_model(model)
    except ConfigError:
        raise
    except CheckpointError as exc:
        if not Path(model).exists():
            raise ConfigError(f"{model}: no such file, nor a registered model name "
                              f"(`unetzoo models`); {exc.message}") from None
        raise
    if train and not reference.has_weights:
        reference.checkpoint("bench --train")  # raises: an exported graph has no weights
    opened = open_model(reference, runtime, torch_only=torch_only)
    spec = opened.checkpoint.model_spec
    eager: nn.Module | None = None  # a network of another tool: parameters, FLOPs unknown
    if opened.checkpoint.state_dict:
        eager = opened.checkpoint.build_model()
    elif spec["name"] in list_models():
        eager = create_model(spec["name"], spec["in_channels"], spec["num_classes"],
                             **spec["kwargs"])
    return BenchModel(opened.module, eager, reference.path.name, opened.runtime, opened.note)


def _times(run, warmup: int, repeats: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        _sync(str(device))
        start = time.perf_counter()
        run()
        _sync(str(device))
        times.append(time.perf_counter() - start)
    return times


def bench(model: nn.Module, runtime: Runtime, size: int = 256, batch: int = 1,
          warmup: int = 3, repeats: int = 20, train: bool = False, name: str = "",
          flops_model: nn.Module | None = None, flops: int | None = None) -> BenchResult:
    """Time `repeats` forward passes (inference) or optimizer steps (`train`: forward,
    loss, backward, AdamW step) on random `batch x C x size x size` input.

    `flops_model` is the eager float32 form of `model` when `model` is an exported graph
    (for parameters and FLOPs); `flops`, when known, skips counting them again.
    """
    if repeats < 1 or warmup < 0 or batch < 1 or size < 1:
        raise ConfigError("--repeats, --batch and --size must be >= 1, --warmup >= 0")
    counted = flops_model if flops_model is not None else \
        None if isinstance(model, ExportedModule) else model  # a graph alone: not counted
    in_channels = int(getattr(counted or model, "in_channels", 3))
    x = torch.randn(batch, in_channels, size, size)
    flops = flops or (count_flops(counted, x[:1]) if counted is not None else 0)
    if train:
        if runtime.backend not in ("auto", "torch"):
            raise ConfigError("training runs in torch; drop --backend for --train")
        runtime = runtime.for_backend("torch")
        run = _train_step(model, runtime, x)
    else:
        pre = Preprocessing(in_channels, (0.0,) * in_channels, (1.0,) * in_channels, size)
        predictor = Predictor(model, pre, "binary", InferenceOptions(runtime, batch_size=batch))
        runtime = predictor.runtime
        run = lambda: predictor.forward(x)  # noqa: E731
    times = _times(run, warmup, repeats, runtime.device)
    median = statistics.median(times)
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else median
    work = flops * batch * (3 if train else 1)  # backward costs about twice the forward
    peak = peak_flops(str(runtime.device), runtime.precision, torch.get_num_threads())
    return BenchResult(
        model=name or type(model).__name__, mode="train" if train else "inference",
        backend=runtime.backend, precision=runtime.precision,
        channels_last=runtime.channels_last, compile=runtime.compile, size=size, batch=batch,
        threads=torch.get_num_threads(),
        params=count_parameters(counted) if counted is not None else 0,
        gflops=flops / 1e9, latency_ms=median * 1e3, latency_p90_ms=p90 * 1e3,
        images_per_s=batch / median, peak_memory_mb=peak_memory_mb(runtime.device),
        tflops=work / median / 1e12, peak_tflops=peak / 1e12,
        fraction_of_peak=work / median / peak)


def _train_step(model: nn.Module, runtime: Runtime, x: torch.Tensor,
                fused: bool | None = None):
    """One training step as the trainer takes it (`OptimizerStep`: autocast, scaled loss,
    the trainer's AdamW with its defaults) on `x` and a fixed random target; `fused=False`
    uses the unfused optimizer (the step before fused optimizers were the default)."""
    model = runtime.prepare_model(model).train()
    forward = torch.compile(model) if runtime.compile else model
    num_classes = int(getattr(model, "num_classes", 1))
    task = "binary" if num_classes == 1 else "multiclass"
    loss_fn = build_loss("bce+dice" if task == "binary" else "ce+dice", task)
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, max(2, num_classes), (x.shape[0], *x.shape[2:]),
                           generator=generator)
    optimizer = build_optimizer("adamw", model, lr=1e-4, weight_decay=1e-4, momentum=0.0,
                                fused=fused)
    step = OptimizerStep(forward, model, loss_fn, optimizer, runtime,
                         getattr(model, "output_weights", None))
    return lambda: step.update(step.loss(x, target))
