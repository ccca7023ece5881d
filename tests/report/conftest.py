"""Runs for the report tests: trained once per session on small synthetic data, and a
generated run folder of 10,000 evaluated images (no training)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml

import unetzoo
from tests.helpers import write_pairs
from unetzoo.metrics import METRIC_NAMES

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
