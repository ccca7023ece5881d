"""The nuclei model shipped in the package: an instance model (one id per nucleus), small,
loads without pickle or network, states its recipe and scores, and finds the nuclei of
held-out dsb2018 images as objects."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import unetzoo
from unetzoo.artefacts.pretrained import PRETRAINED
from unetzoo.instances.matching import InstanceScores

NUCLEI = PRETRAINED["nuclei"].folder
pytestmark = pytest.mark.skipif(not (NUCLEI / "config.json").is_file(),
                                reason="the nuclei weights are not installed")


def test_the_shipped_folder_is_small_and_states_recipe_command_and_scores() -> None:
    size = sum(f.stat().st_size for f in NUCLEI.iterdir())
    assert size <= 20e6  # float16 weights of the plan's U-Net (width 32, 7.8 M: 15.5 MB)
    assert sorted(f.name for f in NUCLEI.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    config = json.loads((NUCLEI / "config.json").read_text())
    assert config["model"]["name"] == "unet" and config["task"] == "instance"
    assert config["class_names"] == ["nucleus"] and config["weights"]["dtype"] == "float16"
    assert config["instance"]["representation"] == config["training"]["representation"]
    assert set(config["instance"]["thresholds"]) >= {"foreground", "seed", "min_size"}
    test = config["metrics"]["test"]
    assert test["split"] == "test" and test["images"] == 66
    card = (NUCLEI / "README.md").read_text()
    assert "benchmarks/train_nuclei.py" in card and "CC0" in card
    objects = test["instances"]["mean_over_images"]
    ap50 = next(t["ap"] for t in objects["per_threshold"] if t["threshold"] == 0.5)
    assert f"| AP@0.5 | {ap50:.4f} |" in card
    assert f"| mean AP 0.5:0.95 | {objects['mean_ap']:.4f} |" in card
    assert "/work/" not in card and "/home/" not in card  # no path of the training machine


def test_the_nuclei_model_loads_by_name_for_prediction_and_fine_tuning() -> None:
    checkpoint = unetzoo.load_checkpoint("nuclei")
    assert checkpoint.task == "instance"
    model = unetzoo.create_model("unet", pretrained="nuclei").eval()
    x = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        assert torch.equal(model(x), checkpoint.build_model()(x))
    head = unetzoo.create_model("unet", num_classes=2, pretrained="nuclei")
    assert head.head.weight.shape[0] == 2


def test_nuclei_finds_the_objects_of_held_out_dsb2018_images(shared_dataset,
                                                             tmp_path: Path) -> None:
    """Labels by default (16-bit TIFF, one id per nucleus), masks on request."""
    root = shared_dataset("dsb2018")
    rows = [r for r in csv.DictReader((root / "split.csv").open()) if r["split"] == "test"]
    chosen = rows[:4]
    images = tmp_path / "images"
    images.mkdir()
    for row in chosen:
        Image.open(root / row["image"]).save(images / Path(row["image"]).name)
    unetzoo.predict("nuclei", images, tmp_path / "labels", progress=False)
    scores = InstanceScores()
    for row in chosen:
        stem = Path(row["image"]).stem
        predicted = tifffile.imread(tmp_path / "labels" / f"{stem}.tif")
        truth = np.asarray(Image.open(root / "labels" / Path(row["mask"]).name))
        assert predicted.shape == truth.shape and predicted.dtype in (np.uint16, np.uint32)
        scores.update(truth.astype(np.int64), predicted.astype(np.int64), stem)
    summary = scores.summary()["mean_over_images"]
    assert summary["per_threshold"][0]["threshold"] == 0.5
    assert summary["per_threshold"][0]["ap"] > 0.6, summary["per_threshold"][0]
    unetzoo.predict("nuclei", images, tmp_path / "masks", progress=False, masks=True)
    for row in chosen:
        mask = np.asarray(Image.open(tmp_path / "masks" / Path(row["image"]).name))
        assert set(np.unique(mask)) <= {0, 255}
