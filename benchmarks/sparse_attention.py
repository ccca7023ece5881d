"""Time and peak memory of one bi-level routing attention layer against dense attention (CPU).

    PYTHONPATH=src python benchmarks/sparse_attention.py [--quick]

Compares, on B=1 maps of S x S tokens with C channels and the same heads and projections:

- sparse: `BiLevelRoutingAttention` (automatic regions, top-k routing, local 5x5 term);
- dense: full softmax attention materialising the heads x N x N weights (what the Sparse-UNet
  seed's code does, mask aside);
- dense_fused: the same maths through `F.scaled_dot_product_attention`, whose CPU kernel never
  stores the N x N matrix (memory ~linear) but still does O(N^2) work.

Each (method, size, mode) runs in a fresh subprocess: peak memory is the rise of the
process's resident-set high-water mark (reset through /proc/self/clear_refs after the setup,
or ru_maxrss minus the resident set otherwise) over warm-up + repeats, so freed CPU tensors
and earlier configurations cannot hide or inflate it. Configurations whose estimated N x N
bytes or FLOPs exceed the limits are skipped and reported with the estimate. The growth
exponent is the least-squares slope of log(time) and log(memory) against log(N), over all
sizes >= 32^2 and over the largest three (where fixed per-call overheads matter least).
Writes benchmarks/results/sparse_attention.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sparse", "dense", "dense_fused")
MODES = ("forward", "train")
SIZES = (32, 48, 64, 96, 128, 256)  # the required 32/64/128/256 plus 48/96 for dense fits
# Rough multiples of one N x N matrix alive at the peak, and of the forward FLOPs.
DENSE_MATRICES = {"forward": 2, "train": 4}
FLOP_FACTOR = {"forward": 1.0, "train": 3.0}


def dense_estimates(size: int, channels: int, heads: int, mode: str) -> tuple[float, float]:
    """(bytes of the heads x N x N float32 weights alive at the peak, attention FLOPs)."""
    n = size * size
    return (DENSE_MATRICES[mode] * heads * n * n * 4.0,
            FLOP_FACTOR[mode] * 4.0 * n * n * channels)


# ---------------------------------------------------------------------------- worker side


def _memory_kib() -> tuple[int, int]:
    """(current, high-water) resident set in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from unetzoo.nn.sparse_attention import BiLevelRoutingAttention, region_shape

    class DenseAttention(nn.Module):
        """Multi-head self-attention over all tokens of a B x H x W x C map."""

        def __init__(self, channels: int, heads: int, fused: bool) -> None:
            super().__init__()
            self.heads, self.fused = heads, fused
            self.q = nn.Linear(channels, channels)
            self.kv = nn.Linear(channels, 2 * channels)
            self.proj = nn.Linear(channels, channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, h, w, c = x.shape
            d = c // self.heads
            q = self.q(x).reshape(b, h * w, self.heads, d).transpose(1, 2)
            k, v = self.kv(x).reshape(b, h * w, 2, self.heads, d).permute(2, 0, 3, 1, 4)
            if self.fused:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                out = (q @ k.transpose(-1, -2) * d**-0.5).softmax(dim=-1) @ v
            return self.proj(out.transpose(1, 2).reshape(b, h, w, c))

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    size, channels, heads = spec["size"], spec["channels"], spec["heads"]
    if spec["method"] == "sparse":
        module: nn.Module = BiLevelRoutingAttention(channels, heads, spec["topk"])
    else:
        module = DenseAttention(channels, heads, fused=spec["method"] == "dense_fused")
    train = spec["mode"] == "train"
    x = torch.randn(1, size, size, channels, requires_grad=train)

    def step() -> None:
        if train:
            module(x).mean().backward()
            module.zero_grad(set_to_none=True)
            x.grad = None
        else:
            with torch.no_grad():
                module(x)

    with torch.no_grad():  # one-time library set-up (thread pool, kernels) is not the layer's
        module(torch.randn(1, 8, 8, channels))
    rss_before, _ = _memory_kib()
    exact_peak = _reset_peak()
    if not exact_peak:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(spec["repeats"] + 1):
        start = time.perf_counter()
        step()
        if i:  # the first pass is a warm-up
            times.append(time.perf_counter() - start)
    peak = _memory_kib()[1] if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"time_s": statistics.median(times), "times_s": times,
              "peak_mib": max(0, peak - rss_before) / 1024, "peak_exact": exact_peak}
    if spec["method"] == "sparse":
        rh, rw = region_shape(size, size)
        regions = math.ceil(size / rh) * math.ceil(size / rw)
        result.update(region=[rh, rw], regions=regions,
                      keys_per_query=min(spec["topk"], regions) * rh * rw)
    return result


# ---------------------------------------------------------------------------- parent side


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    points = [(math.log(x), math.log(y)) for x, y in points if y > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return (sum((x - mx) * (y - my) for x, y in points)
            / sum((x - mx) ** 2 for x, _ in points))


def run_config(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH"))
                                        if p)
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 32 and 64, one repeat")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--topk", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--max-dense-gib", type=float, default=3.0,
                        help="skip dense runs whose N x N matrices would exceed this")
    parser.add_argument("--max-gflop", type=float, default=250.0,
                        help="skip dense runs whose attention FLOPs per pass exceed this")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "sparse_attention.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    sizes, repeats = ([32, 64], 1) if args.quick else (args.sizes, args.repeats)

    rows = []
    for method in METHODS:
        for mode in MODES:
            for size in sizes:
                spec = {"method": method, "mode": mode, "size": size, "channels": args.channels,
                        "heads": args.heads, "topk": args.topk, "repeats": repeats,
                        "threads": args.threads}
                row: dict[str, Any] = dict(spec, tokens=size * size)
                matrix_bytes, flops = dense_estimates(size, args.channels, args.heads, mode)
                if method != "sparse":
                    row.update(dense_matrix_gib=matrix_bytes / 2**30, dense_gflop=flops / 1e9)
                if method == "dense" and matrix_bytes > args.max_dense_gib * 2**30:
                    row["skipped"] = (f"N x N weights at peak ~{matrix_bytes / 2**30:.1f} GiB "
                                      f"> {args.max_dense_gib} GiB")
                elif method != "sparse" and flops > args.max_gflop * 1e9:
                    row["skipped"] = f"~{flops / 1e9:.0f} GFLOP per pass > {args.max_gflop}"
                else:
                    row.update(run_config(spec, args.timeout))
                rows.append(row)
                print(f"{method:11s} {mode:7s} {size:4d}^2: "
                      + (f"{row['time_s'] * 1e3:9.1f} ms {row['peak_mib']:8.1f} MiB"
                         if "time_s" in row else row.get("skipped", row.get("error", ""))),
                      file=sys.stderr, flush=True)

    fits = []
    for method in METHODS:
        for mode in MODES:
            done = [r for r in rows if r["method"] == method and r["mode"] == mode
                    and "time_s" in r and r["size"] >= 32]
            scopes = [("all", done)] + ([("largest 3", done[-3:])] if len(done) > 3 else [])
            for scope, fitted in scopes:
                fits.append({"method": method, "mode": mode, "scope": scope,
                             "sizes": [r["size"] for r in fitted],
                             "time_exponent": slope([(r["tokens"], r["time_s"]) for r in fitted]),
                             "memory_exponent": slope([(r["tokens"], r["peak_mib"])
                                                       for r in fitted])})

    report = {"benchmark": "sparse_attention", "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "torch": __import__("torch").__version__, "config": vars(args) | {
                  "out": str(args.out), "sizes": sizes, "repeats": repeats},
              "rows": rows, "fits": fits}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(markdown(rows, fits))
    print(f"\nwrote {args.out}")


def markdown(rows: list[dict[str, Any]], fits: list[dict[str, Any]]) -> str:
    lines = ["| method | mode | map | tokens N | time (ms, median) | peak memory (MiB) | note |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        note = r.get("skipped") or r.get("error") or ""
        if "keys_per_query" in r:
            note = (f"{r['regions']} regions of {r['region'][0]}x{r['region'][1]}, "
                    f"{r['keys_per_query']} keys/query")
        time_ms = f"{r['time_s'] * 1e3:.1f}" if "time_s" in r else "-"
        peak = f"{r['peak_mib']:.1f}" if "peak_mib" in r else "-"
        lines.append(f"| {r['method']} | {r['mode']} | {r['size']}^2 | {r['tokens']} | "
                     f"{time_ms} | {peak} | {note} |")
    lines += ["", "| method | mode | sizes fitted | time exponent | memory exponent |",
              "|---|---|---|---:|---:|"]
    for f in fits:
        t, m = f["time_exponent"], f["memory_exponent"]
        lines.append(f"| {f['method']} | {f['mode']} | {', '.join(map(str, f['sizes']))} | "
                     f"{'-' if t is None else f'{t:.2f}'} | {'-' if m is None else f'{m:.2f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
