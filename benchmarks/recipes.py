"""Recipe ablation at a fixed number of optimizer steps (equal compute, whatever the load).

Starts from what `unetzoo plan` chooses for the dataset and changes one element at a time
(normalisation, EMA, test-time flips, schedule, width, foreground sampling, ...); every
variant trains for the same number of steps with the same seed and is scored on the test
split (Dice and IoU, mean over images and dataset-global). The MONAI baseline
(monai_baseline.py) can run at the same step count for reference. Writes
benchmarks/results/recipes_<dataset>.json after every variant and prints a markdown table.

    python benchmarks/recipes.py ../shared/data/dsb2018_96 --steps 1000
    python benchmarks/recipes.py ../shared/data/dsb2018_96 --steps 1000 --variants plan no-ema
    python benchmarks/recipes.py ../shared/data/isbi2012_em --steps 600 --monai
    python benchmarks/recipes.py ../shared/data/dsb2018_96 --quick
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import monai_baseline
import numpy as np
import torch
from report import RESULTS, machine, markdown, write_json

import unetzoo
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.data.dataset import SegmentationDataset
from unetzoo.data.prepare import TrainData, prepare_data
from unetzoo.engine.inference.postprocess import PostProcessing
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.engine.plan import plan_for
from unetzoo.metrics import MetricAccumulator
from unetzoo.runtime import Runtime

# name -> options changed from the plan (one element at a time)
VARIANTS: dict[str, dict[str, Any]] = {
    "plan": {},
    "dataset-norm": {"normalize": "dataset"},
    "percentile-norm": {"normalize": "percentile"},
    "no-ema": {"ema": None},
    "no-tta": {"test_tta": "none"},
    "tta-rot90": {"test_tta": "flip-rot90"},
    "poly": {"schedule": "poly"},
    "width-32": {"model_args": {"base_channels": 32}},
    "width-24": {"model_args": {"base_channels": 24}},
    "instance-norm": {"model_args": {"base_channels": 16, "norm": "instance"}},
    "fg-0.33": {"fg_oversample": 0.33},
    "no-fg": {"fg_oversample": 0.0},
    "lr-2e-3": {"lr": 2e-3},
    "strong-aug": {"augment": "strong"},
    "light-aug": {"augment": "light"},
    "no-aug": {"augment": "none"},
    "adam-constant": {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant",
                      "warmup": 0},
    "lovasz": {"loss": "bce+lovasz"},
    "basic-32": {"model_args": {"widths": [32, 32, 64, 128, 256], "norm": "instance"}},
    "attention-16": {"model": "attention_unet",
                     "model_args": {"base_channels": 16, "norm": "instance"}},
    "unetpp-16-ds": {"model": "unetpp", "model_args": {"base_channels": 16, "norm": "instance",
                                                       "deep_supervision": True}},
}


TTAS = ("none", "flip", "flip-rot90")
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def probability_maps(checkpoint: Path, data: TrainData, split: str, tta: str,
                     threads: int | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, foreground probability H x W, target H x W) of a binary model on a split."""
    ckpt = load_checkpoint(checkpoint)
    runtime = Runtime.resolve(threads=threads)
    predictor = Predictor.from_checkpoint(ckpt, InferenceOptions(runtime, tta=tta))
    pairs = data.val if split == "val" else data.test
    # normalised as the run was trained (its checkpoint's preprocessing), not as `data` is
    dataset = SegmentationDataset(pairs, ckpt.preprocessing, data.reading)
    out = []
    for index in range(len(dataset)):
        sample = dataset[index]
        probs = predictor.probabilities(sample["image"])[0].numpy()
        out.append((sample["name"], probs, sample["mask"].numpy()))
    return out


def scores(maps: list[tuple[str, np.ndarray, np.ndarray]], threshold: float = 0.5,
           post: PostProcessing | None = None, per_image: bool = False) -> dict[str, Any]:
    """Dice and IoU (mean over images and global) of thresholded, post-processed maps."""
    metrics = MetricAccumulator("binary", 1, ("foreground",))
    for name, probs, target in maps:
        pred = (probs > threshold).astype(np.uint8)
        if post is not None and post.enabled:
            pred = post.apply(pred, "binary")
        metrics.update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], [name])
    summary = metrics.summary()
    mean, glob = summary["mean_over_images"], summary["global"]
    row = {"dice": mean["dice"], "iou": mean["iou"], "global_dice": glob["dice"],
           "global_iou": glob["iou"]}
    if per_image:
        row["per_image_iou"] = {r["image"]: round(r["iou"], 4) for r in metrics.per_image()}
    return row


def analyse(checkpoint: Path, data: TrainData, threads: int | None, object_area: float
            ) -> dict[str, Any]:
    """What inference choices are worth on the best checkpoint of a binary run: each TTA
    mode at threshold 0.5, the threshold chosen on the validation split (best mean IoU
    over images), hole filling and removal of objects under a quarter of the median
    object area; with per-image test IoUs of the 8-symmetry TTA."""
    out: dict[str, Any] = {}
    maps = {}
    for tta in TTAS:
        maps[tta] = {split: probability_maps(checkpoint, data, split, tta, threads)
                     for split in ("val", "test")}
        out[f"tta_{tta}"] = scores(maps[tta]["test"], per_image=tta == "flip-rot90")
    for tta in ("flip", "flip-rot90"):
        val = {t: scores(maps[tta]["val"], t)["iou"] for t in THRESHOLDS}
        best = max(val, key=val.get)
        out[f"threshold_{tta}"] = {"val_iou": val, "chosen": best,
                                   **scores(maps[tta]["test"], best)}
        small = max(2, int(object_area / 4))
        for name, post in (("fill_holes", PostProcessing(fill_holes=True)),
                           (f"min_size_{small}", PostProcessing(min_size=small)),
                           ("both", PostProcessing(min_size=small, fill_holes=True))):
            out[f"{name}_{tta}"] = {"val": scores(maps[tta]["val"], 0.5, post)["iou"],
                                    **scores(maps[tta]["test"], 0.5, post)}
    return out


def run_variant(dataset: Path, csvfile: str | None, options: dict[str, Any], steps: int,
                threads: int | None, seed: int, data: TrainData | None = None,
                object_area: float = 0.0) -> dict[str, Any]:
    """Train `options` for `steps` optimizer steps (whole epochs, rounded up) and test;
    with test-time augmentation, the best checkpoint is also tested without it. With
    `data` (binary tasks), the inference choices are analysed too (see `analyse`)."""
    per_epoch = min(options["steps_per_epoch"], steps)
    epochs = max(1, math.ceil(steps / per_epoch))
    config = {k: v for k, v in options.items() if k != "time_budget"}
    config.update(epoch=epochs, warmup=min(config.get("warmup", 0), epochs - 1),
                  steps_per_epoch=per_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = unetzoo.train(dataset=str(dataset), csvfile=csvfile, out=f"{tmp}/run",
                               threads=threads, progress=False, seed=seed, **config)
        seconds = time.perf_counter() - started
        plain = None
        if config.get("test_tta", "none") != "none":
            plain = unetzoo.evaluate(result.best_checkpoint, dataset, csvfile=csvfile,
                                     split="test", progress=False).summary
        analysis = analyse(result.best_checkpoint, data, threads, object_area) \
            if data is not None else None
    test = result.test.summary if result.test else {}
    row = {"steps": epochs * per_epoch, "epochs": epochs, "seconds": seconds,
           "best_val": result.best_score,
           "dice": test["mean_over_images"]["dice"], "iou": test["mean_over_images"]["iou"],
           "global_dice": test["global"]["dice"], "global_iou": test["global"]["iou"]}
    if plain is not None:
        row.update(dice_no_tta=plain["mean_over_images"]["dice"],
                   iou_no_tta=plain["mean_over_images"]["iou"])
    if analysis is not None:
        row["analysis"] = analysis
        row["iou_rot90"] = analysis["tta_flip-rot90"]["iou"]
    row["history"] = [{k: h.get(k) for k in ("epoch", "val_dice", "val_iou_per_image")}
                      for h in result.history]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--csvfile", default="split.csv")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--monai", action="store_true",
                        help="also the MONAI baseline at the same step count")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the results file (parallel runs)")
    parser.add_argument("--analyse", action="store_true",
                        help="also score TTA modes, thresholds and post-processing (binary)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 steps, 2 variants")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.variants = 8, ["plan", "no-ema"]
    data = prepare_data(args.dataset, args.csvfile, cache="off")
    plan = plan_for(data)
    name = f"recipes_{args.dataset.name}{'_quick' if args.quick else ''}{args.tag}"
    out: dict[str, Any] = {"dataset": args.dataset.name, "steps": args.steps,
                           "machine": machine(), "plan": plan.options, "date":
                           time.strftime("%Y-%m-%d"), "rows": []}
    print("\n".join(plan.reasons))
    for variant in args.variants:
        options = {**plan.options, **VARIANTS[variant]}
        row = {"variant": variant, "change": json.dumps(VARIANTS[variant]) or "-",
               **run_variant(args.dataset, args.csvfile, options, args.steps, args.threads,
                             args.seed, data if args.analyse else None,
                             plan.dataset.object_area)}
        out["rows"].append(row)
        write_json(name, out)
        print(markdown([row], [k for k in row if k not in ("analysis", "history")]),
              flush=True)
    if args.monai:
        patch = min(128, plan.options["img_size"])
        base = monai_baseline.run(args.dataset, None, args.steps, patch, 8, args.seed,
                                  args.threads)
        test = base["test"]
        out["rows"].append({"variant": "monai-basicunet", "change": "baseline",
                            "steps": base["steps"], "seconds": base["wall_seconds"],
                            "best_val": base["best_val_dice"],
                            "dice": test["mean_over_images"]["dice"],
                            "iou": test["mean_over_images"]["iou"],
                            "global_dice": test["global"]["dice"],
                            "global_iou": test["global"]["iou"]})
        write_json(name, out)
    out["machine_after"] = machine()
    write_json(name, out)
    table = markdown(out["rows"], ["variant", "change", "steps", "dice", "iou", "global_dice",
                                   "global_iou", "iou_no_tta", "iou_rot90", "seconds"])
    print(f"\n{args.dataset.name}, {args.steps} steps, load {out['machine']['load_average']}"
          f"\n{table}\n(results in {RESULTS / name}.json)")


if __name__ == "__main__":
    main()
