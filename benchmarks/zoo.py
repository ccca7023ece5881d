"""Model zoo benchmark: every registered model, one recipe and one budget, real datasets.

For each model: parameters, GFLOPs of one 256 x 256 forward pass, CPU batch-1 latency at
256 x 256, training images per second (dsb2018_96 patch and batch), and test Dice / IoU after
training with the same recipe on each dataset (../shared/data/dsb2018_96 and isbi2012_em with
their split.csv). Models run at the widths in ZOO (full width where it fits a CPU budget, a
documented reduced width otherwise). Writes benchmarks/results/zoo.json after every model
and a markdown table at the end; `--merge` keeps the rows of an earlier run with the same
recipe and budget for the models not run now.

    python benchmarks/zoo.py                       # everything (hours on 2 CPU cores)
    python benchmarks/zoo.py --models unet --datasets isbi2012_em
    python benchmarks/zoo.py --budget 0.4          # 40% of the epochs: fits about 1.5 h
    python benchmarks/zoo.py --budget 0.4 --models u2net --merge   # add or redo one row
    python benchmarks/zoo.py --budget 0.4 --models unet --merge --speed-only  # re-time one
    python benchmarks/zoo.py --quick               # a smoke run: few steps, two models
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from report import RESULTS, machine, write_json

import unetzoo
from unetzoo.engine.bench import bench
from unetzoo.models.u2net import U2NET_DECODER, U2NET_ENCODER
from unetzoo.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def halved(widths: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    return tuple((mid // 2, out // 2) for mid, out in widths)


# U2-Net and DPSAU2-Net at full width take 30-60 min each for this budget on 2 CPU cores:
# they run at half the paper's widths (every stage's mid and out channels halved).
HALF_U2: dict[str, Any] = {"encoder_widths": halved(U2NET_ENCODER),
                           "decoder_widths": halved(U2NET_DECODER)}

# name -> (registered model, keyword arguments, width label)
ZOO: dict[str, tuple[str, dict[str, Any], str]] = {
    "unet": ("unet", {"base_channels": 32}, "32-512"),
    "attention_unet": ("attention_unet", {"base_channels": 32}, "32-512"),
    "r2unet": ("r2unet", {"base_channels": 32}, "32-512"),
    "r2_attention_unet": ("r2_attention_unet", {"base_channels": 32}, "32-512"),
    "se_unet": ("se_unet", {"base_channels": 32}, "32-512"),
    "unetpp": ("unetpp", {"base_channels": 32, "deep_supervision": True}, "32-512 (full), DS"),
    "u2net": ("u2net", HALF_U2, "1/2 of U2-Net's"),
    "u2netp": ("u2netp", {}, "full"),
    "dpsau2net": ("dpsau2net", HALF_U2, "1/2 of U2-Net's"),
    "sparse_unet": ("sparse_unet", {"base_channels": 32}, "32-512 (full)"),
}

# One recipe for every model; the budget is a fixed number of optimizer steps per dataset.
RECIPE: dict[str, Any] = {"loss": "bce+dice", "optimizer": "adamw", "lr": 1e-3,
                          "schedule": "cosine", "warmup": 1, "seed": 0, "augment": "default"}
DATASETS: dict[str, dict[str, Any]] = {
    "dsb2018_96": {"img_size": 96, "batch": 8, "epoch": 15, "steps_per_epoch": 50},
    "isbi2012_em": {"img_size": 256, "batch": 4, "epoch": 15, "steps_per_epoch": 16},
}


def budgets(fraction: float, quick: bool) -> dict[str, dict[str, Any]]:
    """The per-dataset settings with the number of epochs scaled by `fraction`."""
    scaled = {}
    for dataset, settings in DATASETS.items():
        epochs = 2 if quick else max(1, round(settings["epoch"] * fraction))
        steps = 3 if quick else settings["steps_per_epoch"]
        scaled[dataset] = {**settings, "epoch": epochs, "steps_per_epoch": steps}
    return scaled


def train_and_test(name: str, dataset: str, settings: dict[str, Any],
                   workdir: Path) -> dict[str, Any]:
    model, kwargs, _ = ZOO[name]
    start = time.perf_counter()
    result = unetzoo.train(dataset=str(SHARED / dataset), csvfile="split.csv", model=model,
                           model_args=kwargs, out=str(workdir / f"{dataset}-{name}"),
                           progress=False, **RECIPE, **settings)
    seconds = time.perf_counter() - start
    summary = result.test.summary if result.test else {}
    return {"dice": summary["mean_over_images"]["dice"], "iou": summary["mean_over_images"]["iou"],
            "dice_global": summary["global"]["dice"], "train_seconds": seconds,
            "best_val_dice": result.best_score,
            "steps": settings["epoch"] * settings["steps_per_epoch"]}


def earlier_rows(path: Path, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of an earlier results file with the same recipe and budget, by model."""
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if (old.get("recipe"), old.get("budgets")) != (report["recipe"], report["budgets"]):
        raise SystemExit(f"{path}: written with another recipe or budget; not merging")
    return {row["model"]: row for row in old["rows"]}


def in_zoo_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: list(ZOO).index(row["model"]))


def markdown(rows: list[dict[str, Any]], datasets: list[str]) -> str:
    head = ["model", "width", "params (M)", "GFLOPs @256", "latency ms @256", "train img/s"]
    for d in datasets:
        head += [f"{d} Dice", f"{d} IoU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["width"], f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.1f}",
                 f"{r['latency_ms']:.0f}", f"{r['train_images_per_second']:.1f}"]
        for d in datasets:
            scores = r["datasets"].get(d)
            cells += [f"{scores['dice']:.4f}", f"{scores['iou']:.4f}"] if scores else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--budget", type=float, default=1.0,
                        help="fraction of the default number of epochs (steps per epoch kept)")
    parser.add_argument("--merge", action="store_true",
                        help="keep rows of an earlier run with the same recipe and budget")
    parser.add_argument("--speed-only", action="store_true",
                        help="with --merge: re-measure the speed columns, keep the earlier "
                             "Dice and IoU (e.g. after a measurement disturbed by other jobs)")
    parser.add_argument("--quick", action="store_true", help="a few steps, two models")
    args = parser.parse_args()
    if args.speed_only and not args.merge:
        parser.error("--speed-only needs --merge (the scores come from the earlier run)")
    settings = budgets(args.budget, args.quick)
    names = ["unet", "u2netp"] if args.quick else args.models.split(",")
    datasets = [d for d in args.datasets.split(",") if (SHARED / d / "split.csv").is_file()]
    runtime = Runtime.resolve()
    result_name = "zoo_quick" if args.quick else "zoo"
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "runtime": runtime.describe(), "recipe": RECIPE, "budgets": settings,
              "budget_fraction": args.budget, "quick": args.quick, "rows": []}
    earlier = earlier_rows(RESULTS / f"{result_name}.json", report) if args.merge else {}
    kept = [row for model, row in earlier.items() if model not in names]
    if args.speed_only and (missing := [n for n in names if n not in earlier]):
        raise SystemExit(f"--speed-only: no earlier row for {', '.join(missing)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model_name, kwargs, width = ZOO[name]
            model = unetzoo.create_model(model_name, 3, 1, **kwargs)
            infer = bench(model, runtime, size=256, batch=1, repeats=7, name=name)
            size, batch = DATASETS["dsb2018_96"]["img_size"], DATASETS["dsb2018_96"]["batch"]
            train = bench(unetzoo.create_model(model_name, 3, 1, **kwargs), runtime, size=size,
                          batch=batch, repeats=5, train=True, name=name)
            row = {"model": name, "width": width, "params": infer.params,
                   "gflops": infer.gflops, "latency_ms": infer.latency_ms,
                   "train_images_per_second": train.images_per_s, "datasets": {}}
            if args.speed_only:
                row["datasets"] = earlier[name]["datasets"]
            for dataset in [] if args.speed_only else datasets:
                row["datasets"][dataset] = train_and_test(name, dataset, settings[dataset],
                                                          Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
            report["rows"] = in_zoo_order(kept + rows)
            path = write_json(result_name, report)
    print(f"written to {path}")
    print(markdown(report["rows"], datasets))


if __name__ == "__main__":
    main()
