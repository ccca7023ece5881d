"""Every registered model through the whole pipeline: train, resume, evaluate, predict."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.models import list_models


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("zoo") / "data", count=12, size=40)


@pytest.mark.parametrize("name", list_models())
def test_train_resume_evaluate_predict(name: str, dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    options = {"model": name, "preset": "tiny", "img_size": 32, "batch": 2,
               "steps_per_epoch": 2, "workers": 0, "progress": False, "test": False,
               "device": "cpu", "precision": "fp32", "seed": 1, "schedule": "constant"}
    unetzoo.train(dataset=str(dataset), epoch=1, out=str(run), **options)
    resumed = unetzoo.train(resume=str(run), epoch=2)
    assert [row["epoch"] for row in resumed.history] == [1, 2]

    checkpoint = unetzoo.load_checkpoint(resumed.best_checkpoint)
    assert checkpoint.model_spec["name"] == name
    metrics = unetzoo.evaluate(resumed.best_checkpoint, dataset, run / "split.csv",
                               split="test", progress=False)

    written = unetzoo.predict(resumed.best_checkpoint, dataset / "images", tmp_path / "masks",
                              progress=False)
    assert written.images == 12
    # evaluate's global Dice is the Dice of the masks predict writes, on the test split
    rows = list(csv.DictReader((run / "split.csv").read_text().splitlines()))
    tp = fp_fn = 0
    for row in (r for r in rows if r["split"] == "test"):
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{Path(row['image']).stem}.png"))
        assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 255}
        pred, truth = mask > 0, np.asarray(Image.open(dataset / row["mask"])) > 0
        tp += (pred & truth).sum()
        fp_fn += (pred ^ truth).sum()
    expected = 2 * tp / (2 * tp + fp_fn) if tp + fp_fn else 1.0
    assert metrics.summary["global"]["dice"] == pytest.approx(expected, abs=1e-9)
