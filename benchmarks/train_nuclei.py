"""Train the shipped nuclei model (`unetzoo predict --model nuclei`) and measure it.

The model is an instance model: it gives each nucleus its own id (16-bit label images),
with its foreground as a mask on request (`--masks`). Recipe: `unetzoo train --task instance
--time-budget MINUTES` and nothing else, so the plan chooses from the data (on dsb2018: a U-Net
of base width 32 with instance norm, 128-pixel patches, per-image normalisation for the mix of
fluorescence, brightfield and H&E images, stain and colour augmentation because greyscale and
colour images are mixed, the default representation, thresholds chosen on the validation
images after training). Data: the 2018 Data Science Bowl stage1 images (../shared/data/dsb2018:
664 images of 256-1388 pixels, CC0) with their instance label images (`labels/`) and the
dataset's split.csv (532 train / 66 val / 66 test).

The best weights are stored in float16 (`save_pretrained(..., dtype="float16")`) and those
stored weights are evaluated on the test split as `unetzoo eval --model nuclei` evaluates them
(whole images, tiled at native resolution, no test-time augmentation), so the numbers on the
model card are the ones of what ships. With `--install`, the model folder replaces
src/unetzoo/artefacts/weights/nuclei.

    python benchmarks/train_nuclei.py --quick               # a check of the script: ~3 min
    python benchmarks/train_nuclei.py --minutes 120 --install  # the shipped model
    python benchmarks/train_nuclei.py --from-run RUN --install   # package a run made already

`--from-run` packages, scores and installs a run that `unetzoo train --task instance
--time-budget M` on these labels made already (for example the unetzoo run of
benchmarks/instances.py, so that the benchmark's row and the shipped model are one run).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
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
from unetzoo.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"
log = logging.getLogger("unetzoo")


def labels_split(data: Path, out: Path, quick: bool) -> Path:
    """The dataset's split.csv with each mask replaced by its instance label image
    (masks/X.png -> labels/X.png), written to `out`; with `quick`, 16 / 4 / 4 rows.

    Raises:
        SystemExit: a row whose label image is missing.
    """
    rows = list(csv.DictReader((data / "split.csv").open()))
    keep = {"train": 16, "val": 4, "test": 4} if quick else None
    chosen = []
    for row in rows:
        label = "labels/" + Path(row["mask"]).name
        if not (data / label).is_file():
            raise SystemExit(f"{data / label}: no instance label image for {row['image']}")
        if keep is not None:
            if keep.get(row["split"], 0) <= 0:
                continue
            keep[row["split"]] -= 1
        chosen.append({"image": row["image"], "mask": label, "split": row["split"]})
    lines = ["image,mask,split"] + [f"{r['image']},{r['mask']},{r['split']}" for r in chosen]
    path = out / ("labels_split_quick.csv" if quick else "labels_split.csv")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the dsb2018 folder")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "nuclei", help="run folder")
    parser.add_argument("--minutes", type=float, default=120, help="the training budget")
    parser.add_argument("--quick", action="store_true",
                        help="check the script: 2 minutes on 24 images")
    parser.add_argument("--install", action="store_true",
                        help="write the model folder into src/unetzoo/artefacts/weights/nuclei")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out with what is left of its budget")
    parser.add_argument("--from-run", type=Path, default=None,
                        help="package this finished run instead of training (its budget and "
                             "wall clock are read from it)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training and evaluation (default: all cores)")
    args = parser.parse_args()
    setup_logging()
    if not (args.data / "split.csv").is_file():
        print(f"{args.data}: dsb2018 with split.csv not found (--data)", file=sys.stderr)
        return 2
    minutes = 2.0 if args.quick else args.minutes
    csvfile = labels_split(args.data, args.out.parent, args.quick)
    load_before = list(os.getloadavg())
    start = time.perf_counter()
    threads = {} if args.threads is None else {"threads": args.threads}
    if args.from_run is not None:
        args.out = args.from_run
        best_path = args.from_run / "models" / "best.pt"
        best = unetzoo.load_checkpoint(best_path)
        rows = list(csv.DictReader((args.from_run / "metrics.csv").open()))
        steps = int(float(rows[-1]["steps"])) if rows else 0
        train_minutes = float(rows[-1]["elapsed_min"]) if rows else 0.0
        minutes = float(best.config.get("time_budget") or minutes)
        if args.threads is None and best.config.get("threads"):
            args.threads = int(best.config["threads"])
    else:
        if args.resume:
            result = unetzoo.train(resume=str(args.out), progress=False)
        else:
            result = unetzoo.train(dataset=str(args.data), csvfile=str(csvfile),
                                   task="instance", time_budget=minutes, out=str(args.out),
                                   seed=0, overwrite=args.overwrite, progress=False, **threads)
        train_minutes = (time.perf_counter() - start) / 60
        best_path = best_path
        best = unetzoo.load_checkpoint(best_path)
        steps = int(result.history[-1].get("steps", 0)) if result.history else 0  # cumulative
    config = best.config
    cores = args.threads or machine()["cores"]

    folder = args.out / "nuclei"
    command = f"python benchmarks/train_nuclei.py --minutes {args.minutes:g} --install"
    if args.from_run is not None:
        command = (f"python benchmarks/instances.py --minutes {minutes:g} --threads {cores} "
                   "--only unetzoo --out OUT` (its unetzoo training, pinned to one CPU), then "
                   "`python benchmarks/train_nuclei.py --from-run OUT/unetzoo-run --install")
    summary = PRETRAINED["nuclei"].summary
    card = CardInfo(
        title="nuclei: a U-Net that finds each cell nucleus in microscopy images",
        description=f"{summary[0].upper()}{summary[1:]}. Each nucleus gets its own id in a "
                    "16-bit label image; the foreground is a mask on request (`--masks`). "
                    "For fluorescence, brightfield and H&E images (RGB or grey).",
        authors=("unetzoo contributors",), license="MIT",
        citations=("Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 "
                   "Data Science Bowl. Nature Methods 16, 1247-1253 (2019). "
                   "doi:10.1038/s41592-019-0612-7 (training data, BBBC038v1, CC0).",
                   "Graham et al. HoVer-Net: simultaneous segmentation and classification of "
                   "nuclei in multi-tissue histology images. Medical Image Analysis 58 (2019) "
                   "(the horizontal and vertical maps the objects are drawn from)."),
        training_notes=(
            "Data: dsb2018 stage1_train, community-fixed (lopuhin/kaggle-dsbowl-2018-"
            "dataset-fixes), 664 images with instance label images (28,986 nuclei), "
            "split.csv: 532 train / 66 val / 66 test. "
            f"`unetzoo train --task instance --time-budget {minutes:g}` with no recipe flags "
            f"(the plan's choices are in the training section): {steps} optimizer steps in "
            f"{train_minutes:.0f} min of wall clock on {cores} CPU core(s) "
            f"({machine()['cpu']}). Weights stored in float16; the test scores below are "
            "those of the stored weights, as `unetzoo eval --model nuclei` computes them.\n\n"
            f"Reproduce: `{command}` (from a clone of unetzoo with the dataset at "
            "../shared/data/dsb2018)."),
        usage=("unetzoo predict --model nuclei --input images/ --output labels/",
               "unetzoo predict --model nuclei --input images/ --output out/ --masks --rois "
               "--geojson --table",
               "unetzoo eval --model nuclei --dataset DIR --csvfile labels.csv --out eval/",
               "unetzoo train --dataset DIR --init nuclei   # fine-tune"))
    save_pretrained(best_path, folder, dtype="float16", card=card,
                    overwrite=True, class_names=("nucleus",))
    evaluation = evaluate_checkpoint(folder, args.data, csvfile, "test",
                                     args.out / "eval-test-fp16", progress=False)
    log.info(format_summary(evaluation, "test split, float16 weights as shipped:"))
    test = evaluation.to_json()
    save_pretrained(best_path, folder, dtype="float16", overwrite=True,
                    card=card, class_names=("nucleus",), metrics={**best.metrics, "test": test})
    size_mb = (folder / "model.safetensors").stat().st_size / 1e6
    mean, pooled = test["mean_over_images"], test.get("global", {})
    report = {
        "budget_minutes": minutes, "optimizer_steps": steps,
        "train_minutes": round(train_minutes, 1), "weights_mb": round(size_mb, 2),
        "plan": {k: config.get(k) for k in ("model", "model_args", "img_size", "batch",
                                            "normalize", "augment", "representation",
                                            "test_tta")},
        "thresholds": best.instance,
        "test_float16": {"images": test["images"],
                         **{k: mean.get(k) for k in ("ap50", "map", "pq", "aji", "dice",
                                                     "iou")},
                         "pooled": {k: pooled.get(k) for k in ("pq", "aji", "dice", "iou")}},
        "machine": {**machine(), "load_average_at_start": load_before},
        "command": command, "quick": args.quick,
    }
    log.info(json.dumps(report, indent=2, default=str))
    if not args.quick:
        write_json("train_nuclei", json.loads(json.dumps(report, default=str)))
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
