"""The fastest path by default (issue 12): latency of the default `predict` path and of INT8
against torch bf16 + channels-last, test Dice of each, and training throughput (a report,
not a test).

Parts (one command each; `--quick` checks a part in a minute with tiny models):

- `latency`: each model at its reference preset (weights seeded), 256 x 256, batch 1:
  torch fp32, torch bf16 + channels-last (the default before), the default predict path
  (backend `auto`: OpenVINO where installed, converted and cached as `predict` does) and
  OpenVINO INT8 (NNCF, calibrated on isbi2012_em training patches). Settings interleaved in
  every round on a possibly shared machine; medians; ratios to torch bf16 + CL and fp32.
- `accuracy`: each zoo model (benchmarks/zoo.py widths and recipe, a fixed number of
  optimizer steps) trained on dsb2018_96 and isbi2012_em, exported to INT8 with the accuracy
  check on the validation split, then test Dice / IoU in torch fp32, torch bf16, the default
  path and INT8, and their latencies at 256 x 256 (at the graph's size for a graph fixed to
  one size, e.g. sparse_unet).
- `train`: training throughput of the reference U-Net at 256 x 256, batch 4, in the default
  setting: the step as it was (unfused optimizer) against the step as it is, and the step
  as it is in a process of its own with the system allocator and with tcmalloc or jemalloc
  preloaded (each that is installed), with that process's peak memory.

    PYTHONPATH=src python benchmarks/fast_path.py latency --quick
    PYTHONPATH=src python benchmarks/fast_path.py latency                 # U-Net, ~5 min
    PYTHONPATH=src python benchmarks/fast_path.py latency --models all    # zoo, ~1 h
    PYTHONPATH=src python benchmarks/fast_path.py accuracy --budget 0.4   # zoo, ~2.5 h
    PYTHONPATH=src python benchmarks/fast_path.py accuracy --models unet  # ~20 min
    PYTHONPATH=src python benchmarks/fast_path.py train                   # ~10 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from report import machine, markdown, write_json

from unetzoo.artefacts.checkpoint import Checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.data.layouts import find_pairs
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.bench import _times, _train_step, bench, count_flops
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.export.exporter import export_checkpoint
from unetzoo.engine.export.quantize import CalibrationTiles, quantize_graph
from unetzoo.engine.inference.backends import ExportedModule, open_exported, openvino_runner
from unetzoo.engine.inference.graphs import trace_openvino
from unetzoo.engine.inference.opening import open_checkpoint
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.errors import UnetzooError
from unetzoo.models import count_parameters, create_model, list_models
from unetzoo.runtime import Runtime

SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents
               if (p / "shared" / "data").is_dir()), Path("shared/data"))
TORCH = {"torch fp32": {"precision": "fp32", "channels_last": False, "backend": "torch"},
         "torch bf16 + CL": {"precision": "auto", "channels_last": True, "backend": "torch"}}
BASE = "torch bf16 + CL"


def _time(runnable: dict[str, tuple[Runtime, torch.nn.Module]], eager: torch.nn.Module,
          size: int, rounds: int, repeats: int) -> dict[str, float]:
    """Median latency (ms) per setting, settings interleaved in every round; each round's
    median is kept in ROUNDS."""
    flops = count_flops(eager, torch.randn(1, eager.in_channels, size, size))
    times: dict[str, list[float]] = {label: [] for label in runnable}
    for _ in range(rounds):
        for label, (runtime, module) in runnable.items():
            result = bench(module, runtime, size, 1, warmup=1, repeats=repeats,
                           flops_model=eager, flops=flops)
            times[label].append(result.latency_ms)
    ROUNDS.append({label: [round(t, 1) for t in v] for label, v in times.items()})
    return {label: statistics.median(v) for label, v in times.items()}


ROUNDS: list[dict[str, list[float]]] = []


def _ratios(latency: dict[str, float]) -> dict[str, float]:
    base, fp32 = latency[BASE], latency["torch fp32"]
    out = {}
    for label, ms in latency.items():
        out[f"{label} ms"] = ms
        out[f"{label} / bf16+CL"] = ms / base
        out[f"{label} / fp32"] = ms / fp32
    return out


def calibration(info: Checkpoint, count: int) -> CalibrationTiles:
    """Patches of isbi2012_em training images (random images when it is absent)."""
    root = SHARED / "isbi2012_em"
    if (root / "split.csv").is_file():
        pairs = [p for p in find_pairs(root, "split.csv") if p.split == "train"]
        return CalibrationTiles(pairs, info, count)
    raise SystemExit(f"{root} not found: INT8 calibration needs real images")


def latency_part(names: list[str], preset: str, size: int, rounds: int, repeats: int,
                 calibration_count: int) -> list[dict[str, Any]]:
    default = Runtime.resolve("cpu", "auto", backend="auto")
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = create_model(name, 3, 1, preset=preset).eval()
        info = Checkpoint(model.unetzoo_spec, "binary", ("foreground",),  # type: ignore[arg-type]
                          Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=size),
                          model.state_dict())
        runnable = {label: (Runtime.resolve("cpu", **kw), model) for label, kw in TORCH.items()}
        opened = open_checkpoint(info, default)
        runnable["default predict path"] = (opened.runtime, opened.module)
        start = time.perf_counter()
        graph, fixed, _ = trace_openvino(model, (size, size), where=name)
        int8 = quantize_graph(graph, calibration(info, calibration_count))
        quantise_s = time.perf_counter() - start
        ov = Runtime.resolve("cpu", "auto", backend="openvino")
        runnable["openvino int8"] = (ov, ExportedModule(openvino_runner(int8, ov.precision),
                                                        1, fixed, name))
        latency = _time(runnable, model, size, rounds, repeats)
        row = {"model": name, "preset": preset, "params": count_parameters(model),
               "default path": opened.note, "int8 seconds to make": quantise_s,
               **_ratios(latency)}
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()),
              flush=True)
    return rows


def accuracy_part(names: list[str], datasets: list[str], budget: float, quick: bool,
                  rounds: int, repeats: int, save: Callable[[list[dict[str, Any]]], Any]
                  ) -> list[dict[str, Any]]:
    """Rows of the `accuracy` part (see the module docstring); `save(rows)` after each."""
    from zoo import RECIPE, ZOO, budgets

    import unetzoo

    settings = budgets(budget, quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model_name, kwargs, width = ZOO[name]
            for dataset in datasets:
                root = SHARED / dataset
                run = Path(tmp) / f"{dataset}-{name}"
                trained = unetzoo.train(dataset=str(root), csvfile="split.csv",
                                        model=model_name, model_args=kwargs, out=str(run),
                                        progress=False, test=False, **RECIPE,
                                        **settings[dataset])
                best = trained.best_checkpoint
                int8_path = run / "int8.xml"
                steps = settings[dataset]["epoch"] * settings[dataset]["steps_per_epoch"]
                try:
                    int8_result = export_checkpoint(best, "openvino", int8_path, int8=True,
                                                    accept_drop=True,
                                                    calibration_images=16 if quick else None)
                    report = int8_result.quality
                    # a graph fixed to one size (sparse_unet) is timed at that size
                    side = int8_result.input_size[0] if int8_result.input_size else 256
                except UnetzooError as exc:  # a model that does not convert: said, not fatal
                    rows.append({"model": name, "width": width, "dataset": dataset,
                                 "steps": steps, "openvino int8 dice": "does not convert",
                                 "error": str(exc)})
                    print(f"{name} on {dataset}: {exc}", flush=True)
                    save(rows)
                    continue
                scores, modules = {}, {}
                options = {**{label: Runtime.resolve("cpu", **kw) for label, kw in
                              TORCH.items()},
                           "default predict path": Runtime.resolve("cpu", backend="auto")}
                for label, runtime in options.items():
                    result = evaluate_checkpoint(best, root, "split.csv", "test",
                                                 options=InferenceOptions(runtime),
                                                 progress=False)
                    scores[label] = result.summary
                result = evaluate_checkpoint(int8_path, root, "split.csv", "test",
                                             progress=False)
                scores["openvino int8"] = result.summary
                checkpoint = load_checkpoint(best)
                eager = checkpoint.build_model()
                for label, kw in TORCH.items():
                    modules[label] = (Runtime.resolve("cpu", **kw), eager)
                opened = open_checkpoint(checkpoint, Runtime.resolve("cpu", backend="auto"),
                                         source=best)
                modules["default predict path"] = (opened.runtime, opened.module)
                exported = open_exported(int8_path, precision=report["int8_precision"])
                modules["openvino int8"] = (Runtime.resolve("cpu", "auto", backend="openvino"),
                                            exported.module)
                latency = _time(modules, eager, side, rounds, repeats)
                row = {"model": name, "width": width, "dataset": dataset, "steps": steps,
                       "latency size": side,
                       "val int8 check": report, **_ratios(latency)}
                for label, summary in scores.items():
                    row[f"{label} dice"] = summary["global"]["dice"]
                    row[f"{label} iou"] = summary["global"]["iou"]
                    row[f"{label} dice/image"] = summary["mean_over_images"]["dice"]
                row["int8 - fp32 dice"] = row["openvino int8 dice"] - row["torch fp32 dice"]
                rows.append(row)
                print({k: v for k, v in row.items() if k != "val int8 check"}, flush=True)
                save(rows)
    return rows


# Memory allocators PyTorch's CPU tuning guide suggests preloading (Debian packages
# libtcmalloc-minimal4 and libjemalloc2), with the jemalloc settings of PyTorch's own launcher
# (torch.backends.xeon.run_cpu); jemalloc's default decay was slower than glibc here.
ALLOCATORS = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", {}),
    "jemalloc": ("libjemalloc.so.2", {"MALLOC_CONF": "oversize_threshold:1,background_thread:"
                                      "true,metadata_thp:auto,dirty_decay_ms:9000000000,"
                                      "muzzy_decay_ms:9000000000"}),
}
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                "/usr/lib", "/usr/local/lib")


def _unet_step(preset: str, x: torch.Tensor, runtime: Runtime, fused: bool | None = None
               ) -> Callable[[], None]:
    """The default training step of the seeded U-Net at `preset` on `x` (see _train_step)."""
    torch.manual_seed(0)
    return _train_step(create_model("unet", 3, 1, preset=preset), runtime, x, fused=fused)


def _rate(step: Callable[[], None], batch: int, repeats: int, runtime: Runtime) -> float:
    """Images/s of `step` on batches of `batch`: the median of `repeats` timed steps."""
    return batch / statistics.median(_times(step, 1, repeats, runtime.device))


def _library(file: str) -> Path | None:
    """The shared library `file` in the usual system folders, or None."""
    return next((Path(d) / file for d in LIBRARY_DIRS if (Path(d) / file).is_file()), None)


def _peak_rss_mib() -> int:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss, not inherited from the
    process that forked it)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next((int(line.split()[1]) // 1024 for line in status
                 if line.startswith("VmHWM:")), 0)


def _process_rate(library: Path | None, env: dict[str, str], preset: str, size: int,
                  batch: int, repeats: int) -> tuple[float, int]:
    """(images/s, peak RSS in MiB) of the fused step in a new process, with `library`
    preloaded (None: the system allocator)."""
    command = [sys.executable, __file__, "train-step", "--preset", preset, "--size", str(size),
               "--batch", str(batch), "--repeats", str(repeats)]
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    if library is not None:
        environment["LD_PRELOAD"] = str(library)
    out = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    rate, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return rate, rss


def train_part(preset: str, size: int, batch: int, rounds: int, repeats: int
               ) -> list[dict[str, Any]]:
    """Images/s of the default training step with the unfused optimizer (the step before),
    as it is now, and as it is now in a process of its own with the system allocator and
    with each preloadable allocator found; interleaved rounds, medians."""
    runtime = Runtime.resolve("cpu", "auto")
    x = torch.randn(batch, 3, size, size)
    steps = {label: _unet_step(preset, x, runtime, fused)
             for label, fused in (("before: unfused AdamW", False), ("now: fused AdamW", None))}
    processes: dict[str, tuple[Path | None, dict[str, str]]] = {
        "now, own process (system malloc)": (None, {})}
    for name, (file, env) in ALLOCATORS.items():
        if (path := _library(file)) is not None:
            processes[f"now, own process, LD_PRELOAD {name}"] = (path, env)
    results: dict[str, list[float]] = {label: [] for label in (*steps, *processes)}
    rss: dict[str, int] = {}
    for _ in range(rounds):
        for label, step in steps.items():
            results[label].append(_rate(step, batch, repeats, runtime))
        for label, (path, env) in processes.items():
            rate, rss[label] = _process_rate(path, env, preset, size, batch, repeats)
            results[label].append(rate)
    base = statistics.median(next(iter(results.values())))
    return [{"step": label, "images/s": statistics.median(v),
             "x before": statistics.median(v) / base, "rounds": v,
             **({"peak RSS MiB": rss[label]} if label in rss else {})}
            for label, v in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("latency", "accuracy", "train", "train-step"),
                        help="train-step: one process's rate, for `train` (internal)")
    parser.add_argument("--quick", action="store_true", help="tiny models, a few steps")
    parser.add_argument("--models", default="unet",
                        help="comma-separated model names, or `all` (the whole zoo)")
    parser.add_argument("--datasets", default="dsb2018_96,isbi2012_em")
    parser.add_argument("--budget", type=float, default=0.4, help="accuracy: see zoo.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per round")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--calibration", type=int, default=300, help="INT8 patches")
    parser.add_argument("--preset", default="reference", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "train-step":
        runtime = Runtime.resolve("cpu", "auto")
        step = _unet_step(args.preset, torch.randn(args.batch, 3, args.size, args.size), runtime)
        rate = _rate(step, args.batch, args.repeats, runtime)
        print(json.dumps([rate, _peak_rss_mib()]))
        return
    names = list_models() if args.models == "all" else args.models.split(",")
    before = machine()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine_before": before,
                              "part": args.part, "quick": args.quick, "budget": args.budget}
    name = f"fast_path_{args.part}" + ("_quick" if args.quick else "") + args.tag
    if args.part == "latency":
        preset, size = ("tiny", 64) if args.quick else ("reference", 256)
        rows = latency_part(["unet"] if args.quick else names, preset, size,
                            2 if args.quick else args.rounds, args.repeats,
                            16 if args.quick else args.calibration)
        columns = ["model", *(f"{k} ms" for k in (*TORCH, "default predict path",
                                                   "openvino int8")),
                   "default predict path / bf16+CL", "openvino int8 / bf16+CL",
                   "openvino int8 / fp32"]
    elif args.part == "accuracy":
        datasets = [d for d in args.datasets.split(",") if (SHARED / d / "split.csv").is_file()]
        from zoo import ZOO

        chosen = list(ZOO) if args.models == "all" else names
        def save(rows: list[dict[str, Any]]) -> None:
            write_json(name, {**result, "rows": rows, "partial": True})

        rows = accuracy_part(["unet"] if args.quick else chosen,
                             datasets[:1] if args.quick else datasets, args.budget,
                             args.quick, 1 if args.quick else args.rounds, args.repeats, save)
        columns = ["model", "dataset", "steps", "torch fp32 dice", "torch bf16 + CL dice",
                   "default predict path dice", "openvino int8 dice", "int8 - fp32 dice",
                   "default predict path / bf16+CL", "openvino int8 / bf16+CL"]
    else:
        preset, size = ("tiny", 64) if args.quick else ("reference", 256)
        rows = train_part(preset, size, 4, 2 if args.quick else args.rounds, args.repeats)
        columns = ["step", "images/s", "x before", "peak RSS MiB"]
    result.update(rows=rows, rounds_ms=ROUNDS, machine_after=machine())
    path = write_json(name, result)
    print(f"\n{before['cpu']}, {before['threads']} threads, bf16 units {before['bf16_units']}, "
          f"load average {before['load_average'][0]:.2f} before, "
          f"{result['machine_after']['load_average'][0]:.2f} after\n")
    print(markdown(rows, columns))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
