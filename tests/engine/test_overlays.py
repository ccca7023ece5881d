"""Overlays show the image as read, whatever the checkpoint's normalisation (a per-image
normalisation cannot be undone with the dataset's mean and std)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.references import as_checkpoint
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.runtime import Runtime

TITLE = 14  # the title band above each panel (viz._titled)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("overlays") / "data", count=3, size=40)


@pytest.mark.parametrize("normalization", ["dataset", "image", "percentile"])
def test_eval_debug_overlays_show_the_original_pixels(data: Path, tmp_path: Path,
                                                       normalization: str) -> None:
    torch.manual_seed(0)
    net = unetzoo.create_model("unet", 3, 1, preset="tiny")
    # dataset statistics far from the images': undoing them on a per-image normalised
    # image would show a different picture
    pre = Preprocessing(3, (0.1, 0.2, 0.3), (0.05, 0.5, 2.0), 32, normalization=normalization)
    path = unetzoo.save_checkpoint(tmp_path / "m.pt", as_checkpoint(net, preprocessing=pre))
    options = InferenceOptions(Runtime.resolve("cpu", "fp32", False, backend="torch"))
    evaluate_checkpoint(path, data, out_dir=tmp_path / "eval", debug=True, options=options,
                        progress=False)
    for image_path in sorted((data / "images").iterdir()):
        original = np.asarray(Image.open(image_path).convert("RGB"))
        panel = np.asarray(Image.open(tmp_path / "eval" / "overlays" / image_path.name))
        height, width = original.shape[:2]
        np.testing.assert_array_equal(panel[TITLE: TITLE + height, :width], original)


def test_curves_of_a_run_that_has_not_validated_yet_are_drawn_without_warnings(tmp_path):
    import warnings

    from PIL import Image

    from unetzoo.viz import save_curves

    history = [{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.5}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns on a legend with nothing in it
        path = save_curves(tmp_path / "curves.png", history)
    assert Image.open(path).size == (1000, 380)
