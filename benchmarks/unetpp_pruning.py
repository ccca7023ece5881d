"""UNet++ inference-time pruning: eval-mode CPU latency and parameters used per depth.

Builds the deep-supervised reference UNet++ (`preset="reference_ds"`, widths 32-512), then
times the full network and each pruned sub-network UNet++ L^k (k = 1..n) on one fp32
image: median of `--runs` forwards after `--warmup` forwards, the variants taking turns.
"Parameters used" counts the parameters of the modules that actually ran (forward hooks),
so it is measured, not derived.
Writes JSON and prints a markdown table. Not a test: timings depend on the machine.

    PYTHONPATH=src python benchmarks/unetpp_pruning.py [--quick] [--size 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from unetzoo.models import create_model
from unetzoo.models.unetpp import UNetPlusPlus

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "unetpp_pruning.json"


def trace(model: UNetPlusPlus, x: torch.Tensor) -> tuple[int, int]:
    """Parameters of the modules one forward on `x` runs, and how many nodes X^{i,j} ran."""
    ran: set[nn.Module] = set()
    nodes = {node for row in model.nodes for node in row}
    watched = nodes | {m for m in model.modules() if any(True for _ in m.parameters(False))}
    handles = [m.register_forward_hook(lambda module, *_: ran.add(module)) for m in watched]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    used = sum(p.numel() for m in ran for p in m.parameters(recurse=False))
    return used, len(ran & nodes)


def latencies_ms(model: UNetPlusPlus, x: torch.Tensor, depths: list[int | None], runs: int,
                 warmup: int) -> list[float]:
    """Median forward wall time (ms) per prune depth, after `warmup` forwards of each.

    The depths take turns within every round, so load from other processes on a shared
    machine falls on all of them alike rather than on whichever ran last.
    """
    times: list[list[float]] = [[] for _ in depths]
    with torch.inference_mode():
        for step in range(warmup + runs):
            for k, depth in enumerate(depths):
                model.prune(depth)
                start = time.perf_counter()
                model(x)
                if step >= warmup:
                    times[k].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def run(size: int, runs: int, warmup: int, threads: int) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = create_model("unetpp", in_channels=3, num_classes=1, preset="reference_ds")
    assert isinstance(model, UNetPlusPlus)
    model.eval()
    x = torch.randn(1, 3, size, size)
    depths: list[int | None] = [None, *range(1, model.full_depth + 1)]
    rows = []
    for depth, latency in zip(depths, latencies_ms(model, x, depths, runs, warmup),
                              strict=True):
        model.prune(depth)
        params, nodes = trace(model, x)
        rows.append({"variant": "full" if depth is None else f"L{depth}", "prune_depth": depth,
                     "nodes_run": nodes, "params_used": params, "latency_ms": latency})
    full = rows[0]["latency_ms"]
    for row in rows:
        row["speedup"] = full / row["latency_ms"]
    return {
        "benchmark": "unetpp_pruning", "model": "unetpp", "preset": "reference_ds",
        "input_shape": [1, 3, size, size], "dtype": "float32", "device": "cpu",
        "threads": threads, "runs": runs, "warmup": warmup, "statistic": "median",
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "results": rows,
    }


def markdown(report: dict) -> str:
    lines = ["| variant | nodes run | params used | latency (ms) | speed-up |",
             "|---|---|---|---|---|"]
    for row in report["results"]:
        lines.append(f"| {row['variant']} | {row['nodes_run']} | {row['params_used']:,} | "
                     f"{row['latency_ms']:.1f} | {row['speedup']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--runs", type=int, default=20, help="timed forwards per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forwards first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: torch's default)")
    parser.add_argument("--quick", action="store_true", help="5 runs after 1 warm-up")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON path")
    args = parser.parse_args()
    runs, warmup = (5, 1) if args.quick else (args.runs, args.warmup)
    report = run(args.size, runs, warmup, args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"UNet++ reference_ds, 1x3x{args.size}x{args.size} fp32, CPU, {args.threads} "
          f"thread(s), median of {runs} runs after {warmup} warm-up\n")
    print(markdown(report))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
