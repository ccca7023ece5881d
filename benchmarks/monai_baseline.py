"""The plain MONAI baseline of issue 11, as a new user would write it in 50 lines.

MONAI BasicUNet (default features 32-32-64-128-256-32, 2.0 M parameters), Adam 1e-3, BCE +
soft Dice, random flips and 90-degree rotations, per-image per-channel standardisation
(MONAI's NormalizeIntensity(channel_wise=True)), bf16 autocast + channels-last where the CPU
has bf16, validation once per pass over the training pixels (Dice over the validation set)
keeping the best weights, then the test split. Images larger than the patch are trained on
random patches and predicted with MONAI's Gaussian sliding window. Stops at a wall-clock
budget (validation counts against it) or after a fixed number of optimizer steps.

Test metrics use unetzoo's own metric code (MetricAccumulator), so both sides of a
comparison are scored identically. MONAI is a benchmark dependency, not a runtime one.

    python benchmarks/monai_baseline.py ../shared/data/dsb2018_96 --minutes 15 --out b.json
    python benchmarks/monai_baseline.py ../shared/data/isbi2012_em --steps 300 --patch 256
    python benchmarks/monai_baseline.py ../shared/data/dsb2018_96 --quick
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unetzoo.fileio import atomic_write_text
from unetzoo.metrics import MetricAccumulator
from unetzoo.runtime import cpu_has_native_bf16


def load_split(root: Path) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """(name, H x W x C uint8 image, H x W bool mask) per split of `root/split.csv`."""
    splits: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    with open(root / "split.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            image = np.asarray(Image.open(root / row["image"]))
            if image.ndim == 2:
                image = image[..., None]
            image = image[..., :3]
            mask = np.asarray(Image.open(root / row["mask"]).convert("L")) > 127
            splits.setdefault(row["split"], []).append((Path(row["image"]).stem, image, mask))
    return splits


def standardise(image: np.ndarray) -> np.ndarray:
    """Per-image, per-channel zero mean and unit variance: `C x H x W` float32."""
    x = image.astype(np.float32).transpose(2, 0, 1)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return (x - mean) / np.maximum(std, 1e-8)


def random_patch(image: np.ndarray, mask: np.ndarray, patch: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A random `patch` crop (zero-padded when smaller), randomly flipped and rotated."""
    h, w = image.shape[1:]
    if h < patch or w < patch:
        ph, pw = max(0, patch - h), max(0, patch - w)
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
        h, w = mask.shape
    y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
    image, mask = image[:, y: y + patch, x: x + patch], mask[y: y + patch, x: x + patch]
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[::-1]
    k = int(rng.integers(0, 4))
    image, mask = np.rot90(image, k, (1, 2)), np.rot90(mask, k)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def predict(model: torch.nn.Module, images: list[np.ndarray], patch: int, bf16: bool
            ) -> list[torch.Tensor]:
    """Binary `H x W` predictions of standardised `C x H x W` images of one size: batched
    when they fit a patch, else MONAI's Gaussian sliding window, 4 windows a pass."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.stack(images)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        if max(x.shape[-2:]) <= patch:
            logits = model(x)
        else:
            logits = torch.cat([sliding_window_inference(x[i: i + 1], patch, 4, model,
                                                         overlap=0.25, mode="gaussian")
                                for i in range(len(x))])
    return list((logits.float()[:, 0] > 0).to(torch.uint8))


def score(model: torch.nn.Module, items: list[tuple[str, np.ndarray, np.ndarray]], patch: int,
          bf16: bool, batch: int = 16) -> dict[str, Any]:
    """unetzoo's summary (mean over images and global) of `items`."""
    model.eval()
    metrics = MetricAccumulator("binary", 1, ("foreground",))
    for start in range(0, len(items), batch):
        group = items[start: start + batch]
        shapes = {image.shape for _, image, _ in group}
        chunks = [group] if len(shapes) == 1 else [[item] for item in group]
        for chunk in chunks:
            preds = predict(model, [standardise(image) for _, image, _ in chunk], patch, bf16)
            for (name, _, mask), pred in zip(chunk, preds, strict=True):
                metrics.update(pred[None], torch.from_numpy(mask.astype(np.int64))[None],
                               [name])
    model.train()
    return metrics.summary()


def run(dataset: Path, minutes: float | None, steps: int | None, patch: int, batch: int,
        seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """Train the baseline on `dataset`'s split.csv and return its test scores and timings."""
    from monai.losses import DiceLoss
    from monai.networks.nets import BasicUNet

    started = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    splits = load_split(dataset)
    train = [(standardise(image), mask) for _, image, mask in splits["train"]]
    channels = train[0][0].shape[0]
    bf16 = cpu_has_native_bf16()
    model = BasicUNet(spatial_dims=2, in_channels=channels, out_channels=1)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice, bce = DiceLoss(sigmoid=True), torch.nn.BCEWithLogitsLoss()
    # validate once per pass over the training pixels (not one patch per image: on a few
    # large images that would validate every other step)
    area = float(np.mean([mask.size for _, mask in train]))
    steps_per_pass = max(1, round(len(train) * max(1.0, area / patch**2) / batch))
    deadline = started + minutes * 60 if minutes else None
    best, best_state, step, val_seconds = -1.0, None, 0, 0.0
    history = []
    load_seconds = time.perf_counter() - started
    while True:
        for _ in range(steps_per_pass):
            picks = rng.integers(0, len(train), batch)
            pairs = [random_patch(*train[i], patch, rng) for i in picks]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))
            y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.float32))
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = bce(logits.float(), y) + dice(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if (steps and step >= steps) or (deadline and time.perf_counter() > deadline):
                break
        tick = time.perf_counter()
        val = score(model, splits["val"], patch, bf16)["global"]["dice"]
        val_seconds += time.perf_counter() - tick
        history.append({"step": step, "val_dice": val})
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
        if (steps and step >= steps) or (deadline and time.perf_counter() > deadline):
            break
    train_seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    test = score(model, splits["test"], patch, bf16)
    return {"method": "monai-basicunet", "dataset": dataset.name, "steps": step,
            "patch": patch, "batch": batch, "bf16": bf16, "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "best_val_dice": best, "validation_seconds": val_seconds,
            "load_seconds": load_seconds, "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - started, "history": history,
            "test": {"mean_over_images": test["mean_over_images"], "global": test["global"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--steps", type=int, default=None, help="fixed optimizer steps")
    parser.add_argument("--patch", type=int, default=None,
                        help="training patch (default: the image size up to 128)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 steps")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.minutes = 10, None
    if not args.steps and not args.minutes:
        parser.error("give --minutes or --steps")
    patch = args.patch
    if patch is None:
        first = next(iter(load_split(args.dataset).values()))[0][1]
        patch = min(128, *first.shape[:2])
    result = run(args.dataset, args.minutes, args.steps, patch, args.batch, args.seed,
                 args.threads)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    glob, mean = result["test"]["global"], result["test"]["mean_over_images"]
    print(f"monai baseline on {result['dataset']}: {result['steps']} steps in "
          f"{result['train_seconds']:.0f} s; test dice {mean['dice']:.4f} iou {mean['iou']:.4f} "
          f"(mean over images), global dice {glob['dice']:.4f} iou {glob['iou']:.4f}")


if __name__ == "__main__":
    main()
