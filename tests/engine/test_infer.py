"""Whole-image inference: tiling, blending, resize mode, runtime choices."""

from __future__ import annotations

import itertools

import torch

from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.infer import InferenceOptions, Predictor, gaussian_importance, tile_starts
from unetzoo.engine.runtime import Runtime
from unetzoo.models import create_model

FP32 = Runtime.resolve("cpu", "fp32", channels_last=False)


def predictor(img_size: int, mode: str = "crop", overlap: float = 0.25) -> Predictor:
    torch.manual_seed(0)
    model = create_model("unet", 3, 2, preset="tiny")
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=img_size, resize_mode=mode)
    return Predictor(model, pre, "multiclass", InferenceOptions(FP32, batch_size=3,
                                                                overlap=overlap))


def test_tile_starts_cover_the_image() -> None:
    assert tile_starts(100, 128, 0.25) == [0]
    starts = tile_starts(300, 128, 0.25)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 96 for a, b in itertools.pairwise(starts))


def test_a_tile_covering_the_whole_image_equals_whole_image_inference() -> None:
    image = torch.randn(3, 40, 56)
    whole = predictor(img_size=64).logits(image)
    with torch.no_grad():
        direct = predictor(img_size=64).model(image[None])[0]
    assert torch.allclose(whole, direct, atol=1e-6)
    tiled_once = predictor(img_size=64)._sliding_window(image)
    assert torch.allclose(tiled_once, direct, atol=1e-5)


def test_sliding_window_blends_tiles_into_full_size_output() -> None:
    image = torch.randn(3, 70, 90)
    pred = predictor(img_size=32, overlap=0.5)
    out = pred.logits(image)
    assert out.shape == (2, 70, 90) and torch.isfinite(out).all()
    with torch.no_grad():
        whole = pred.model(image[None])[0]
    # a convolutional net sees nearly the same context in the tile centres
    agreement = (out.argmax(0) == whole.argmax(0)).float().mean()
    assert agreement > 0.8


def test_resize_mode_returns_original_size() -> None:
    out = predictor(img_size=32, mode="resize").labels(torch.randn(3, 45, 61))
    assert out.shape == (45, 61) and out.dtype == torch.long


def test_gaussian_importance_peaks_in_the_centre() -> None:
    weight = gaussian_importance(9, 9)
    assert weight[4, 4] == 1.0 and weight.min() > 0 and weight[0, 0] < weight[2, 2]


def test_bfloat16_runtime_gives_float32_logits() -> None:
    model = create_model("unet", 3, 2, preset="tiny")
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=64)
    bf16 = Runtime.resolve("cpu", "bf16", channels_last=True)
    out = Predictor(model, pre, "multiclass", InferenceOptions(bf16)).logits(
        torch.randn(3, 33, 35))
    assert out.dtype == torch.float32 and out.shape == (2, 33, 35)
