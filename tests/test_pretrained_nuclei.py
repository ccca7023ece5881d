"""The nuclei model shipped in the package: small, loads without pickle or network, states
its recipe and metrics, and segments held-out dsb2018 images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unetzoo
from unetzoo.artefacts.pretrained import PRETRAINED

NUCLEI = PRETRAINED["nuclei"].folder
pytestmark = pytest.mark.skipif(not (NUCLEI / "config.json").is_file(),
                                reason="the nuclei weights are not installed")


def test_the_shipped_folder_is_small_and_states_recipe_command_and_metrics() -> None:
    size = sum(f.stat().st_size for f in NUCLEI.iterdir())
    assert size <= 10e6
    assert sorted(f.name for f in NUCLEI.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    config = json.loads((NUCLEI / "config.json").read_text())
    assert config["model"]["name"] == "unet" and config["task"] == "binary"
    assert config["class_names"] == ["nucleus"] and config["weights"]["dtype"] == "float16"
    test = config["metrics"]["test"]
    assert test["split"] == "test" and test["images"] == 66
    card = (NUCLEI / "README.md").read_text()
    assert "benchmarks/train_nuclei.py" in card and "CC0" in card
    assert f"| dice | {test['mean_over_images']['dice']:.4f} |" in card
    assert f"| iou | {test['mean_over_images']['iou']:.4f} |" in card


def test_the_nuclei_model_loads_by_name_for_prediction_and_fine_tuning() -> None:
    checkpoint = unetzoo.load_checkpoint("nuclei")
    model = unetzoo.create_model("unet", pretrained="nuclei").eval()
    x = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        assert torch.equal(model(x), checkpoint.build_model()(x))
    head = unetzoo.create_model("unet", num_classes=2, pretrained="nuclei")
    assert head.head.weight.shape[0] == 2


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    return 2 * float((pred & target).sum()) / max(1, int(pred.sum() + target.sum()))


def test_nuclei_segments_held_out_dsb2018_images(shared_dataset, tmp_path: Path) -> None:
    root = shared_dataset("dsb2018")
    rows = [r for r in csv.DictReader((root / "split.csv").open()) if r["split"] == "test"]
    chosen = rows[:4]
    images = tmp_path / "images"
    images.mkdir()
    for row in chosen:
        Image.open(root / row["image"]).save(images / Path(row["image"]).name)
    unetzoo.predict("nuclei", images, tmp_path / "masks", progress=False)
    scores = [dice(np.asarray(Image.open(tmp_path / "masks" / Path(r["image"]).name)) > 0,
                   np.asarray(Image.open(root / r["mask"])) > 0) for r in chosen]
    assert np.mean(scores) > 0.75, scores
