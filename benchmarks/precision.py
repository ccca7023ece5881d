"""Precision, memory format and compilation: training and inference speed, and the test Dice
after the same training budget (a report, not a test).

Speed: the default U-Net (64-1024 widths, 96 GFLOPs a forward pass) at 256 x 256, training
at batch 4 and inference at batch 1, each setting timed in every round with the settings
interleaved (the machine may be shared), medians over rounds. Accuracy: the same U-Net at a
reduced width trained with the same seed, data order and number of steps in fp32 and in the
default fast setting, evaluated on the held-out test split, and the fp32-trained checkpoint
evaluated in each inference setting.

    PYTHONPATH=src python benchmarks/precision.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from report import RESULTS, machine, markdown, write_json

import unetzoo
from unetzoo.engine.bench import bench, count_flops, peak_flops
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.inference.opening import to_backend
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.models import create_model
from unetzoo.runtime import Runtime

SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents
               if (p / "shared" / "data").is_dir()), Path("shared/data"))
TRAIN_SETTINGS = {  # label -> Runtime.resolve keyword arguments
    "fp32": {"precision": "fp32", "channels_last": False},
    "fp32 + channels-last": {"precision": "fp32", "channels_last": True},
    "bf16": {"precision": "bf16", "channels_last": False},
    "bf16 + channels-last (default)": {"precision": "bf16", "channels_last": True},
    "bf16 + channels-last + compile": {"precision": "bf16", "channels_last": True,
                                       "compile": True},
}
INFER_SETTINGS = {
    "fp32 eager": {"precision": "fp32", "channels_last": False},
    "bf16 + channels-last (default)": {"precision": "bf16", "channels_last": True},
    "bf16 + channels-last + compile": {"precision": "bf16", "channels_last": True,
                                       "compile": True},
    "onnxruntime fp32": {"precision": "fp32", "backend": "onnxruntime"},
    "openvino fp32": {"precision": "fp32", "backend": "openvino"},
    "openvino bf16": {"precision": "bf16", "backend": "openvino"},
}


def speed(settings: dict[str, dict], train: bool, model_kwargs: dict, size: int, batch: int,
          rounds: int, repeats: int) -> list[dict]:
    """Median images/s and latency per setting over `rounds` interleaved rounds. Each
    setting has its own model (training changes it), exported once for a non-torch backend;
    FLOPs are counted once."""
    torch.manual_seed(0)
    eager = create_model("unet", **model_kwargs)
    flops = count_flops(eager, torch.randn(1, eager.in_channels, size, size))
    runnable = {}
    for label, kwargs in settings.items():
        runtime = Runtime.resolve("cpu", **kwargs)
        torch.manual_seed(0)
        model = create_model("unet", **model_kwargs)
        if runtime.backend != "torch":
            model = to_backend(model, runtime.backend, size, runtime.precision)
        runnable[label] = (runtime, model)
    runs: dict[str, list] = {label: [] for label in settings}
    for _ in range(rounds):
        for label, (runtime, model) in runnable.items():
            runs[label].append(bench(model, runtime, size, batch, warmup=2, repeats=repeats,
                                     train=train, name="unet", flops_model=eager, flops=flops))
    base = statistics.median(r.images_per_s for r in runs[next(iter(settings))])
    rows = []
    for label, results in runs.items():
        ips = statistics.median(r.images_per_s for r in results)
        peak = statistics.median(r.fraction_of_peak for r in results)
        rows.append({"setting": label, "images/s": ips,
                     "ms/batch": statistics.median(r.latency_ms for r in results),
                     "x fp32": ips / base,
                     "TFLOP/s": statistics.median(r.tflops for r in results),
                     "of peak": f"{100 * peak:.0f}%",
                     "rounds": [round(r.images_per_s, 3) for r in results]})
    return rows


def accuracy(dataset: Path, width: int, epochs: int, folder: Path) -> dict:
    """Test Dice after the same budget in fp32 and in the default fast setting, and the
    fp32 checkpoint evaluated in every inference setting."""
    trained = {}
    for precision in ("fp32", "auto"):
        result = unetzoo.train(dataset=str(dataset), csvfile="split.csv", model="unet",
                               model_args={"base_channels": width}, epoch=epochs, seed=0,
                               precision=precision, out=str(folder / precision),
                               progress=False, img_size=96, batch=8)
        trained[precision] = {"test_dice": result.test.summary["global"]["dice"],
                              "seconds": sum(row["seconds"] for row in result.history),
                              "checkpoint": str(result.best_checkpoint)}
    rows = []
    for label, kwargs in INFER_SETTINGS.items():
        if kwargs.get("compile"):
            continue  # same numbers as without compile, minutes of compilation
        options = InferenceOptions(Runtime.resolve("cpu", **kwargs))
        result = evaluate_checkpoint(trained["fp32"]["checkpoint"], dataset, "split.csv",
                                     "test", options=options, progress=False)
        rows.append({"inference": label, "test dice": result.summary["global"]["dice"],
                     "dice per image": result.summary["mean_over_images"]["dice"]})
    return {"training": trained, "inference": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 16-64 U-Net at 64 x 64, 2 rounds, 2 accuracy epochs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per round")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--dataset", type=Path, default=SHARED / "dsb2018_96")
    parser.add_argument("--width", type=int, default=16, help="U-Net width for accuracy")
    parser.add_argument("--epochs", type=int, default=15, help="training budget for accuracy")
    parser.add_argument("--skip", choices=("speed", "accuracy"), help="skip one part")
    args = parser.parse_args()
    # the default U-Net: 64-1024 widths, transposed-conv up-sampling, 96 GFLOPs at 256 x 256
    model_kwargs = {"base_channels": 16, "depth": 3} if args.quick else {}
    size = 64 if args.quick else 256
    rounds, epochs = (2, 2) if args.quick else (args.rounds, args.epochs)
    train_settings, infer_settings = dict(TRAIN_SETTINGS), dict(INFER_SETTINGS)
    if args.no_compile:
        for table in (train_settings, infer_settings):
            for label in [k for k, v in table.items() if v.get("compile")]:
                del table[label]
    result: dict = {"machine_before": machine(), "size": size, "model": model_kwargs}
    if args.skip != "speed":
        result["peak_tflops"] = {p: peak_flops("cpu", p, torch.get_num_threads()) / 1e12
                                 for p in ("fp32", "bf16")}
        result["train"] = speed(train_settings, True, model_kwargs, size, 4, rounds,
                                args.repeats)
        result["inference"] = speed(infer_settings, False, model_kwargs, size, 1, rounds,
                                    args.repeats * 3)
    if args.skip != "accuracy" and (args.dataset / "split.csv").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            result["accuracy"] = accuracy(args.dataset, args.width, epochs, Path(tmp))
        result["accuracy"].update(dataset=str(args.dataset), width=args.width, epochs=epochs)
    result["machine_after"] = machine()
    name = "precision" + ("_quick" if args.quick else "")
    previous = RESULTS / f"{name}.json"  # a part skipped keeps its earlier numbers
    if args.skip and previous.is_file():
        kept = json.loads(previous.read_text())
        result = {**{k: v for k, v in kept.items() if k not in result}, **result}
    path = write_json(name, result)
    print(f"{result['machine_before']['cpu']}, {result['machine_before']['threads']} threads, "
          f"bf16 units: {result['machine_before']['bf16_units']}, load average "
          f"{result['machine_before']['load_average'][0]:.2f} before, "
          f"{result['machine_after']['load_average'][0]:.2f} after\n")
    columns = ["setting", "images/s", "ms/batch", "x fp32", "TFLOP/s", "of peak"]
    if "train" in result:
        print(f"measured peak: {result['peak_tflops']}\n")
        print(f"Training, U-Net {model_kwargs}, {size} x {size}, batch 4\n")
        print(markdown(result["train"], columns) + "\n")
        print(f"Inference, batch 1\n\n{markdown(result['inference'], columns)}\n")
    if "accuracy" in result:
        acc = result["accuracy"]
        print(f"Accuracy: U-Net width {acc['width']}, {acc['epochs']} epochs on "
              f"{acc['dataset']}\n")
        print(markdown([{"training": k, **{n: v for n, v in t.items() if n != "checkpoint"}}
                        for k, t in acc["training"].items()]) + "\n")
        print(markdown(acc["inference"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
