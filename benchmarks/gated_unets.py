"""Cost of the attention gates and of the gated / recurrent / SE U-Nets (a report, not a test).

Per gate kind at every reference skip level: parameters, conv multiply-adds, activation bytes
saved for backward (the gate's inputs included, weights not) and forward+backward time; per
model (reference width): parameters, activation bytes saved for backward and forward+backward
time. Writes JSON and prints markdown tables.

    PYTHONPATH=src python benchmarks/gated_unets.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from unetzoo.models import count_parameters, create_model
from unetzoo.nn.factory import gate_factory


def saved_bytes(module: nn.Module, run: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct activations (not parameters) autograd keeps for backward."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())


def conv_macs(module: nn.Module, run: Callable[[], torch.Tensor]) -> int:
    """Multiply-adds of the Conv2d layers of `module` during `run()`."""
    total = 0

    def hook(conv: nn.Conv2d, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += out.numel() * conv.in_channels // conv.groups * k

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, nn.Conv2d)]
    run()
    for h in handles:
        h.remove()
    return total


def median_ms(run: Callable[[], torch.Tensor], repeats: int) -> float:
    run().sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run().sum().backward()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_gates(size: int, repeats: int) -> list[dict]:
    rows = []
    for level, width in enumerate([64, 128, 256, 512]):
        side = size // 2**level
        x = torch.randn(1, width, side, side, requires_grad=True)
        g_up = torch.randn(1, width, side, side, requires_grad=True)
        g_coarse = torch.randn(1, 2 * width, side // 2, side // 2, requires_grad=True)
        for kind in ("same_level", "coarse"):
            gate = gate_factory(kind, bias=True)(width, width, 2 * width).train()
            run = partial(gate, x, g_up, g_coarse)
            rows.append({"level": level, "skip": f"{width}x{side}x{side}", "gate": kind,
                         "params": count_parameters(gate),
                         "conv_MMACs": conv_macs(gate, run) / 1e6,
                         "saved_MB": saved_bytes(gate, run) / 2**20,
                         "fwd_bwd_ms": median_ms(run, repeats)})
    return rows


def bench_models(size: int, repeats: int) -> list[dict]:
    variants = [("unet", {}), ("attention_unet", {"gate": "same_level"}),
                ("attention_unet", {"gate": "coarse"}), ("r2unet", {}),
                ("r2_attention_unet", {"gate": "same_level"}), ("se_unet", {"se": "se"}),
                ("se_unet", {"se": "scse"})]
    rows = []
    x = torch.randn(1, 3, size, size)
    for name, kw in variants:
        model = create_model(name, preset="reference", **kw).train()
        run = partial(model, x)
        rows.append({"model": name, "kwargs": kw, "params": count_parameters(model),
                     "saved_MB": saved_bytes(model, run) / 2**20,
                     "fwd_bwd_ms": median_ms(run, repeats)})
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = [f"{v:.1f}" if isinstance(v, float) else str(v) for r in rows for v in r.values()]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for i in range(len(rows)):
        lines.append("| " + " | ".join(fmt[i * len(keys):(i + 1) * len(keys)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 x 64 input, 3 repeats")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gated_unets.json"))
    args = parser.parse_args()
    size, repeats = (64, 3) if args.quick else (args.size, args.repeats)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"size": size, "repeats": repeats, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "gates": bench_gates(size, repeats),
              "models": bench_models(size, repeats)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"input 1x3x{size}x{size}, batch 1, train mode, median of {repeats}, "
          f"{result['threads']} threads\n")
    print("Attention gates at the reference skip levels\n\n" + markdown(result["gates"]) + "\n")
    print("Models (reference presets)\n\n" + markdown(result["models"]))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
