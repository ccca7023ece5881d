"""Train the shipped nuclei model (`unetzoo predict --model nuclei`) and measure it.

Recipe: U-Net (base 16, depth 5: 1.94 M parameters, 3.9 MB in fp16) trained with unetzoo on
the 2018 Data Science Bowl stage1 images (../shared/data/dsb2018: 664 images of 256-1388
pixels, RGB, CC0) with the dataset's split.csv (532 train / 66 val / 66 test): random 256 x
256 crops at native resolution, default augmentation, bce+dice, AdamW lr 1e-3 with a cosine
schedule and one warm-up epoch, batch 8, a fixed number of optimizer steps (so the result
does not depend on the machine's load), validation every 2 epochs on whole val images
(tiled), best checkpoint by validation Dice.

The best weights are stored in float16 (`save_pretrained(..., dtype="float16")`) and those
stored weights are evaluated on the test split with `unetzoo eval` (whole images, tiled at
native resolution), so the numbers on the model card are the ones of what ships. With
`--install`, the model folder goes to src/unetzoo/weights/nuclei.

    python benchmarks/train_nuclei.py --quick            # a check of the script: ~2 min
    nice -n 5 python benchmarks/train_nuclei.py --install  # the shipped model
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

from report import RESULTS, machine, write_json

import unetzoo
from unetzoo.artefacts.modelcard import CardInfo
from unetzoo.artefacts.pretrained import PRETRAINED
from unetzoo.artefacts.references import save_pretrained
from unetzoo.cli import setup_logging
from unetzoo.engine.evaluate import evaluate_checkpoint, format_summary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"
log = logging.getLogger("unetzoo")

RECIPE = {"model": "unet", "model_args": {"base_channels": 16, "depth": 5},
          "loss": "bce+dice", "optimizer": "adamw", "lr": 1e-3, "schedule": "cosine",
          "warmup": 1, "batch": 8, "img_size": 256, "resize_mode": "crop",
          "augment": "default", "val_every": 2, "seed": 0}


def quick_split(data: Path, out: Path) -> Path:
    """A CSV of 16 train, 4 val and 4 test rows of the dataset's split.csv (for --quick)."""
    rows = list(csv.DictReader((data / "split.csv").open()))
    keep = {"train": 16, "val": 4, "test": 4}
    chosen = []
    for row in rows:
        if keep.get(row["split"], 0) > 0:
            keep[row["split"]] -= 1
            chosen.append(row)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "quick_split.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "mask", "split"])
        writer.writeheader()
        writer.writerows(chosen)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the dsb2018 folder")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "nuclei", help="run folder")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs of 66 steps (batch 8) each")
    parser.add_argument("--quick", action="store_true",
                        help="check the script: 2 epochs of 2 steps on 24 images")
    parser.add_argument("--install", action="store_true",
                        help="write the model folder into src/unetzoo/weights/nuclei")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out where it stopped (exactly)")
    args = parser.parse_args()
    setup_logging()
    if not (args.data / "split.csv").is_file():
        print(f"{args.data}: dsb2018 with split.csv not found (--data)", file=sys.stderr)
        return 2
    csvfile = quick_split(args.data, args.out.parent / "nuclei-quick-split") if args.quick \
        else args.data / "split.csv"
    recipe = dict(RECIPE)
    epochs = 2 if args.quick else args.epochs
    steps = {"steps_per_epoch": 2, "img_size": 64, "val_every": 1} if args.quick else {}
    recipe.update(steps)
    load_before = list(__import__("os").getloadavg())
    start = time.perf_counter()
    if args.resume:
        result = unetzoo.train(resume=str(args.out), epoch=epochs, progress=False)
    else:
        result = unetzoo.train(dataset=str(args.data), csvfile=str(csvfile), epoch=epochs,
                               out=str(args.out), overwrite=args.overwrite, progress=False,
                               **recipe)
    train_minutes = (time.perf_counter() - start) / 60
    steps_done = sum(1 for _ in result.history) * (recipe.get("steps_per_epoch") or 66)

    folder = args.out / "nuclei"
    command = ("nice -n 5 python benchmarks/train_nuclei.py --install"
               + (f" --epochs {args.epochs}" if args.epochs != 6 else ""))
    summary = PRETRAINED["nuclei"].summary
    card = CardInfo(
        title="nuclei: a U-Net for cell nuclei in microscopy images",
        description=f"{summary[0].upper()}{summary[1:]}. Binary masks (nucleus / "
                    "background) for fluorescence, brightfield and H&E images.",
        authors=("unetzoo contributors",), license="MIT",
        citations=("Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 "
                   "Data Science Bowl. Nature Methods 16, 1247-1253 (2019). "
                   "doi:10.1038/s41592-019-0612-7 (training data, BBBC038v1, CC0).",),
        training_notes=(
            f"Data: dsb2018 stage1_train, community-fixed (lopuhin/kaggle-dsbowl-2018-"
            f"dataset-fixes), 664 images, split.csv: 532 train / 66 val / 66 test. "
            f"{epochs} epochs x {recipe.get('steps_per_epoch') or 66} steps of batch "
            f"{recipe['batch']} ({steps_done} optimizer steps, {train_minutes:.0f} min on "
            "2 CPU cores, bf16 autocast). Weights stored in float16; the test metrics below "
            "are those of the stored weights.\n\nReproduce: `" + command + "` (from a "
            "clone of unetzoo with the dataset at ../shared/data/dsb2018)."),
        usage=("unetzoo predict --model nuclei --input images/ --output masks/",
               "unetzoo eval --model nuclei --dataset DIR --csvfile split.csv --out eval/",
               "unetzoo train --dataset DIR --init nuclei   # fine-tune"))
    save_pretrained(result.best_checkpoint, folder, dtype="float16", card=card,
                    overwrite=True, class_names=("nucleus",))
    evaluation = evaluate_checkpoint(folder, args.data, csvfile, "test",
                                     args.out / "eval-test-fp16", progress=False)
    log.info(format_summary(evaluation, "test split, float16 weights as shipped:"))
    test = evaluation.to_json()
    best_row = unetzoo.load_checkpoint(result.best_checkpoint).metrics
    save_pretrained(result.best_checkpoint, folder, dtype="float16", overwrite=True,
                    card=card, class_names=("nucleus",), metrics={**best_row, "test": test})
    size_mb = (folder / "model.safetensors").stat().st_size / 1e6
    report = {
        "recipe": {**recipe, "epoch": epochs}, "optimizer_steps": steps_done,
        "train_minutes": round(train_minutes, 1), "weights_mb": round(size_mb, 2),
        "test_float16": {"dice_mean": test["mean_over_images"]["dice"],
                         "iou_mean": test["mean_over_images"]["iou"],
                         "dice_global": test["global"]["dice"],
                         "iou_global": test["global"]["iou"], "images": test["images"]},
        "machine": {**machine(), "load_average_at_start": load_before},
        "command": command, "quick": args.quick,
    }
    if result.test is not None:
        report["test_float32"] = {"dice_mean": result.test.summary["mean_over_images"]["dice"],
                                   "iou_mean": result.test.summary["mean_over_images"]["iou"]}
    log.info(json.dumps(report, indent=2))
    if not args.quick:
        write_json("train_nuclei", report)
        log.info(f"results: {RESULTS / 'train_nuclei.json'}")
    if args.install:
        if args.quick:
            log.info("--install is ignored with --quick")
        else:
            target = PRETRAINED["nuclei"].folder
            save_pretrained(folder, target, dtype="float16", overwrite=True, card=card)
            log.info(f"installed: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
