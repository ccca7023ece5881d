"""Inference speed of every registered model: fp32 eager against the faster settings (a
report, not a test).

Each model (reference preset unless `--preset` says otherwise; `--preset default` is the
registry default, e.g. the 64-1024 U-Net with transposed-conv up-sampling) at 256 x 256, batch 1, in
every setting: PyTorch fp32 eager, PyTorch bf16 autocast + channels-last (the default on CPUs
with bf16 units), onnxruntime fp32, OpenVINO fp32 and OpenVINO bf16 (its own default on such
CPUs); optionally torch.compile. Graphs are exported once per model (and checked against
eager fp32), then the settings are timed interleaved in every round (the machine may be
shared); latencies are medians over all timed passes.

    PYTHONPATH=src python benchmarks/zoo_speed.py --quick
"""

from __future__ import annotations

import argparse
import statistics

import torch
from report import machine, markdown, write_json

from unetzoo.engine.bench import bench, count_flops
from unetzoo.engine.inference.backends import open_graph
from unetzoo.engine.inference.graphs import trace_onnx
from unetzoo.models import count_parameters, create_model, list_models
from unetzoo.runtime import Runtime

SETTINGS = {  # label -> Runtime.resolve keyword arguments
    "torch fp32": {"precision": "fp32", "channels_last": False},
    "torch bf16 + CL": {"precision": "bf16", "channels_last": True},
    "onnxruntime fp32": {"precision": "fp32", "backend": "onnxruntime"},
    "openvino fp32": {"precision": "fp32", "backend": "openvino"},
    "openvino bf16": {"precision": "bf16", "backend": "openvino"},
}
COMPILED = {"torch bf16 + CL + compile": {"precision": "bf16", "channels_last": True,
                                          "compile": True}}


def bench_model(name: str, preset: str, size: int, rounds: int, repeats: int,
                settings: dict[str, dict]) -> dict:
    torch.manual_seed(0)
    model = create_model(name, 3, 1, preset=None if preset == "default" else preset).eval()
    flops = count_flops(model, torch.randn(1, 3, size, size))
    graph, fixed, diff = trace_onnx(model, (size, size), where=name)  # one export for all
    runnable = {}
    for label, kwargs in settings.items():
        runtime = Runtime.resolve("cpu", **kwargs)
        module = model if runtime.backend == "torch" else open_graph(
            graph, runtime.backend, runtime.precision, 1, fixed, name)
        runnable[label] = (runtime, module)
    times: dict[str, list[float]] = {label: [] for label in settings}
    for _ in range(rounds):
        for label, (runtime, module) in runnable.items():
            result = bench(module, runtime, size, 1, warmup=1, repeats=repeats, name=name,
                           flops_model=model, flops=flops)
            times[label].append(result.latency_ms)
    latency = {label: statistics.median(v) for label, v in times.items()}
    fastest = min(latency, key=latency.__getitem__)
    base = latency["torch fp32"]
    return {"model": name, "preset": preset, "params": count_parameters(model),
            "gflops": flops / 1e9, "export max abs diff": diff,
            **{f"{k} ms": v for k, v in latency.items()},
            "fastest": fastest, "fastest / fp32": latency[fastest] / base,
            "fastest TFLOP/s": flops / latency[fastest] / 1e9,
            "rounds_ms": {k: [round(t, 1) for t in v] for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny presets at 64 x 64")
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--preset", default="reference",
                        help="model preset, or `default` for the registry defaults")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    preset, size = ("tiny", 64) if args.quick else (args.preset, args.size)
    settings = {**SETTINGS, **(COMPILED if args.compile else {})}
    before = machine()
    rows = []
    for name in args.models:
        rows.append(bench_model(name, preset, size, args.rounds, args.repeats, settings))
        print(f"{name}: " + ", ".join(f"{k} {rows[-1][f'{k} ms']:.1f} ms" for k in settings),
              flush=True)
    result = {"machine_before": before, "machine_after": machine(), "size": size,
              "preset": preset, "rows": rows}
    suffix = "_quick" if args.quick else "" if len(args.models) > 1 else f"_{args.models[0]}"
    path = write_json(f"zoo_speed{suffix}_{preset}", result)
    print(f"\n{before['cpu']}, {before['threads']} threads, bf16 units "
          f"{before['bf16_units']}, load average {before['load_average'][0]:.2f} before, "
          f"{result['machine_after']['load_average'][0]:.2f} after; {size} x {size}, "
          f"batch 1, {preset} presets\n")
    columns = ["model", "params", "gflops", *(f"{k} ms" for k in settings), "fastest",
               "fastest / fp32"]
    print(markdown(rows, columns))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
