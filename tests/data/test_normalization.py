"""Per-image and percentile normalisation: whole-image statistics, whatever the crop or tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import ConfigError
from unetzoo.models import create_model


def _image(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def test_dataset_normalisation_uses_the_stored_statistics():
    pre = Preprocessing(3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    image = _image()
    assert np.allclose(pre.normalize(image), (image - 0.5) / 0.25)


def test_image_normalisation_removes_each_images_brightness_and_contrast():
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, normalization="image")
    image = _image()
    dim = 0.1 + 0.2 * image  # the same scene, darker and flatter
    a, b = pre.normalize(image), pre.normalize(dim)
    assert np.allclose(a, b, atol=1e-4)
    assert np.allclose(a.reshape(-1, 3).mean(0), 0, atol=1e-5)
    assert np.allclose(a.reshape(-1, 3).std(0), 1, atol=1e-4)


def test_percentile_normalisation_clips_hot_pixels():
    pre = Preprocessing(1, (0.0,), (1.0,), normalization="percentile")
    image = np.full((100, 100, 1), 0.2, np.float32)
    image[::2] = 0.3
    image[0, 0] = 1.0  # one hot pixel
    out = pre.normalize(image)
    assert out[0, 0, 0] == pytest.approx(out[0, 1, 0])  # clipped to the 99.5th percentile
    assert np.allclose(sorted(np.unique(out.round(4))), [-1, 1], atol=1e-3)


def test_a_patch_is_normalised_with_its_whole_images_statistics():
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, normalization="image")
    image = _image()
    stats = pre.statistics(image)
    whole = pre.to_tensor(image, stats)
    assert torch.equal(pre.to_tensor(image[5:20, 7:30], stats), whole[:, 5:20, 7:30])


def test_tiled_prediction_normalises_tiles_as_the_whole_image():
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=32, normalization="image")
    model = create_model("unet", 3, 1, preset="tiny").eval()
    predictor = Predictor(model, pre, "binary", InferenceOptions(overlap=0.5))
    image = _image(1, 56)
    from_array = torch.from_numpy(predictor.logits(image))  # tiles cut from the array
    from_tensor = predictor.logits(pre.to_tensor(image))  # the dataset's whole-image tensor
    assert from_array.shape == (1, 56, 56)
    assert torch.allclose(from_array, from_tensor, atol=1e-5)


def test_old_checkpoints_keep_dataset_normalisation_and_bad_modes_are_refused():
    saved = {"in_channels": 1, "mean": [0.5], "std": [0.2], "img_size": 64,
             "resize_mode": "crop"}
    assert Preprocessing.from_dict(saved).normalization == "dataset"
    with pytest.raises(ConfigError, match="normalization"):
        Preprocessing(1, (0.5,), (0.2,), normalization="minmax")
