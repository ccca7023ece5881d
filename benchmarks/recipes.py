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
from report import RESULTS, machine, markdown, write_json

import unetzoo
from unetzoo.data.prepare import prepare_data
from unetzoo.engine.plan import plan_for

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
}


def run_variant(dataset: Path, csvfile: str | None, options: dict[str, Any], steps: int,
                threads: int | None, seed: int) -> dict[str, Any]:
    """Train `options` for `steps` optimizer steps (whole epochs, rounded up) and test;
    with test-time augmentation, the best checkpoint is also tested without it."""
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
    test = result.test.summary if result.test else {}
    row = {"steps": epochs * per_epoch, "epochs": epochs, "seconds": seconds,
           "best_val": result.best_score,
           "dice": test["mean_over_images"]["dice"], "iou": test["mean_over_images"]["iou"],
           "global_dice": test["global"]["dice"], "global_iou": test["global"]["iou"]}
    if plain is not None:
        row.update(dice_no_tta=plain["mean_over_images"]["dice"],
                   iou_no_tta=plain["mean_over_images"]["iou"])
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
                             args.seed)}
        out["rows"].append(row)
        write_json(name, out)
        print(markdown([row], list(row)), flush=True)
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
                                   "global_iou", "iou_no_tta", "seconds"])
    print(f"\n{args.dataset.name}, {args.steps} steps, load {out['machine']['load_average']}"
          f"\n{table}\n(results in {RESULTS / name}.json)")


if __name__ == "__main__":
    main()
