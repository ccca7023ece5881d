"""Objects wider than the patch: the plan's downscaled whole images against full-resolution
patches, under the same time budget.

No dataset in ../shared has objects wider than a CPU patch (128 px), so this benchmark
renders one: dermoscopy-like photographs (640 x 480 around, skin with uneven colour,
shading and hairs; one lesion per image, about 160-380 px across, irregular and sometimes
low-contrast, with fuzzy borders and dark globules). Both runs take `unetzoo train
--time-budget M` with the plan; the second keeps the full resolution by giving the patch
the plan chose before it could downscale (`--resize-mode crop --img-size 256`). Both are
scored on the same test images at their full size (Dice and IoU, mean over images and
global). Writes benchmarks/results/large_objects<tag>.json and prints a markdown table.

    python benchmarks/large_objects.py --minutes 5
    python benchmarks/large_objects.py --quick
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from report import machine, markdown, write_json

import unetzoo
from unetzoo.data.prepare import prepare_data
from unetzoo.engine.plan import make_plan, plan_for


def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise smoothed over `scale` px."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale)
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def lesion(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 photograph, 0/255 mask) pair, fully determined by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    height = int(rng.integers(440, 540))
    width = int(height * rng.uniform(1.2, 1.4))
    shape = (height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # the lesion: an irregular star-shaped region with a few Fourier harmonics
    radius = rng.uniform(0.18, 0.35) * min(shape)
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    angle = np.arctan2(yy - cy, xx - cx)
    edge = np.ones_like(angle)
    for k in range(2, 7):
        edge += rng.uniform(0.0, 0.25 / k ** 0.5) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    mask = np.hypot(yy - cy, xx - cx) < radius * edge
    # skin: uneven colour and shading
    skin = np.array([rng.uniform(0.75, 0.92), rng.uniform(0.55, 0.7), rng.uniform(0.45, 0.6)])
    image = skin[None, None] * (1 + 0.06 * _smooth(rng, shape, width / 6))[..., None]
    image *= (1 - rng.uniform(0, 0.35) * (np.hypot(yy - height / 2, xx - width / 2)
                                          / np.hypot(height / 2, width / 2)) ** 2)[..., None]
    # the lesion's pigment: textured, sometimes faint, fuzzy at the border
    pigment = np.array([rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3)])
    texture = np.clip(0.75 + 0.25 * _smooth(rng, shape, rng.uniform(4, 15)), 0.2, 1.2)
    blur = rng.uniform(2, 12)
    weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), blur) * rng.uniform(0.35, 1.0)
    image = image * (1 - weight[..., None]) + pigment[None, None] * (texture * weight)[..., None]
    for _ in range(int(rng.integers(0, 25))):  # dark globules inside the lesion
        ys, xs = np.nonzero(mask)
        pick = int(rng.integers(len(ys)))
        cv2.circle(image, (int(xs[pick]), int(ys[pick])), int(rng.integers(2, 7)),
                   tuple(float(v) for v in pigment * 0.5), -1)
    for _ in range(int(rng.integers(0, 9))):  # hairs across the picture
        points = np.cumsum(rng.normal(0, 25, (8, 2)), axis=0) + rng.uniform(0, width, 2)
        cv2.polylines(image, [points.astype(np.int32)], False,
                      tuple(float(v) for v in skin * 0.25), int(rng.integers(1, 4)))
    image += 0.02 * rng.standard_normal(image.shape)
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return rgb, mask.astype(np.uint8) * 255


def write_dataset(root: Path, count: int, seed: int = 0) -> Path:
    """`count` pairs under root/images and root/masks and a split.csv (70 / 15 / 15 %)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(count):
        image, mask = lesion(seed, i)
        name = f"lesion_{i:04d}.png"
        Image.fromarray(image).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)
        split = "train" if i < 0.7 * count else "val" if i < 0.85 * count else "test"
        rows.append((f"images/{name}", f"masks/{name}", split))
    with open(root / "split.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "mask", "split"), *rows])
    return root


def run(dataset: Path, minutes: float, threads: int | None, seed: int,
        **explicit: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = unetzoo.train(dataset=str(dataset), csvfile="split.csv", out=f"{tmp}/run",
                               time_budget=minutes, threads=threads, progress=False,
                               seed=seed, **explicit)
        wall = time.perf_counter() - started
    test = result.test.summary
    return {"dice": test["mean_over_images"]["dice"], "iou": test["mean_over_images"]["iou"],
            "global_dice": test["global"]["dice"], "global_iou": test["global"]["iou"],
            "best_val": result.best_score, "epochs": len(result.history),
            "wall_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="images (70/15/15 split)")
    parser.add_argument("--minutes", type=float, default=5.0, help="time budget per run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 images, 0.3 min")
    args = parser.parse_args()
    if args.quick:
        args.count, args.minutes = 20, 0.3
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "lesions", args.count, args.seed)
        data = prepare_data(dataset, "split.csv", cache="off")
        plan = plan_for(data, args.minutes)
        print("\n".join(plan.reasons))
        # what the plan chooses when it may not downscale (no structure widths measured)
        full = make_plan(replace(plan.dataset, foreground_width=0.0), plan.machine,
                         args.minutes).options
        variants = {"plan": {},
                    "full resolution": {"resize_mode": full["resize_mode"],
                                        "img_size": full["img_size"]}}
        out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                               "count": args.count, "minutes": args.minutes,
                               "plan": plan.options, "fingerprint": plan.dataset.to_dict(),
                               "rows": []}
        for name, explicit in variants.items():
            row = {"variant": name, "mode": explicit.get("resize_mode", "resize"),
                   "img_size": explicit.get("img_size", plan.options["img_size"]),
                   **run(dataset, args.minutes, args.threads, args.seed, **explicit)}
            out["rows"].append(row)
            write_json(f"large_objects{'_quick' if args.quick else ''}{args.tag}", out)
            print(markdown([row], list(row)), flush=True)
    out["machine_after"] = machine()
    write_json(f"large_objects{'_quick' if args.quick else ''}{args.tag}", out)
    print(markdown(out["rows"], list(out["rows"][0])))


if __name__ == "__main__":
    main()
