"""Runs for the report tests: trained once per session on small synthetic data, and a
generated run folder of 10,000 evaluated images (no training)."""

from __future__ import annotations

import csv
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.metrics import METRIC_NAMES
from unetzoo.runtime import Runtime

TINY = {"img_size": 32, "batch": 4, "workers": 0, "progress": False, "preset": "tiny",
        "precision": "fp32", "report": False}  # pages are written by the tests themselves


@pytest.fixture(scope="session")
def binary_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two binary runs on the same 24 images (2 test images): an Attention U-Net (attention
    maps) and a U-Net with another learning rate."""
    root = tmp_path_factory.mktemp("binary")
    data = write_pairs(root / "data", count=24, size=32)
    first = unetzoo.train(dataset=str(data), model="attention_unet", epoch=3, lr=0.01,
                          out=str(root / "att"), **TINY)
    second = unetzoo.train(dataset=str(data), model="unet", epoch=2, lr=0.003,
                           out=str(root / "unet"), **TINY)
    return first.run_dir, second.run_dir


@pytest.fixture(scope="session")
def multiclass_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deep-supervised UNet++ on 3 classes (side outputs, a confusion matrix)."""
    root = tmp_path_factory.mktemp("multiclass")
    data = write_pairs(root / "data", count=12, size=40, multiclass=True)
    result = unetzoo.train(dataset=str(data), model="unetpp", epoch=2, lr=0.01,
                           out=str(root / "run"), **TINY)
    return result.run_dir


def write_instance_pairs(root: Path, count: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Bright discs on a dark background with their 16-bit label images (ids 10, 20, ...;
    later discs take the pixels they share with earlier ones, so some touch)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        labels = np.zeros((size, size), np.uint16)
        for k in range(1, 7):
            y, x = rng.integers(8, size - 8, 2)
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= int(rng.integers(4, 8)) ** 2] = 10 * k
        image = rng.normal(0.1, 0.03, (size, size))
        image[labels > 0] = 0.7
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"im{i:02d}.png")
        Image.fromarray(labels).save(root / "masks" / f"im{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def instance_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two instance runs on 16 images of discs (2 test images): a tiny U-Net trained for 3
    short epochs, and a copy of it whose checkpoint decodes with other thresholds,
    evaluated again (other objects from the same network, without training)."""
    root = tmp_path_factory.mktemp("instance")
    data = write_instance_pairs(root / "data")
    first = unetzoo.train(dataset=str(data), task="instance", model="unet", epoch=3,
                          lr=0.003, out=str(root / "a"), logger="none",
                          **{**TINY, "img_size": 64}).run_dir
    second = root / "b"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns("report*", "eval-*"))
    best = second / "models" / "best.pt"
    checkpoint = load_checkpoint(best)
    instance = dict(checkpoint.instance or {})
    instance["thresholds"] = {**instance["thresholds"], "foreground": 0.45, "seed": 0.55}
    save_checkpoint(best, replace(checkpoint, instance=instance))
    (second / "models" / "epoch_last.pt").unlink()
    evaluate_checkpoint(best, str(data), csvfile=second / "split.csv", split="test",
                        out_dir=second / "test",
                        options=InferenceOptions(Runtime.resolve(precision="fp32")),
                        progress=False)
    return first, second


def write_large_run(folder: Path, images: int = 10_000, epochs: int = 30) -> Path:
    """A run folder as training leaves it, without checkpoint or dataset: config.yaml,
    metrics.csv, train.log and a test evaluation of `images` images."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": "unet", "dataset": "gone",
                                                        "lr": 0.001, "epoch": epochs}))
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "lr", "train_loss", "seconds", "val_dice", "val_iou"])
        for e in range(1, epochs + 1):
            writer.writerow([e, 1e-3 * (1 - e / (epochs + 1)), 1 / e, 2.0, 1 - 1 / (e + 1),
                             1 - 1.5 / (e + 1.5)])
    test = folder / "test"
    test.mkdir()
    rows = [{"image": f"img_{i:05d}", **{k: round(rng.random(), 6) for k in METRIC_NAMES}}
            for i in range(images)]
    with (test / "per_image.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    summary = {k: sum(r[k] for r in rows) / images for k in METRIC_NAMES}
    (test / "metrics.json").write_text(json.dumps({
        "images": images, "mean_over_images": summary, "global": summary, "per_class": {},
        "fps": 100.0, "seconds": 100.0}))
    return folder


@pytest.fixture(scope="session")
def large_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_large_run(tmp_path_factory.mktemp("large") / "run")
