"""Whole-image inference: tiling, streaming blend, resize mode, TTA, runtime choices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.postprocess import PostProcessing
from unetzoo.engine.inference.predictor import (
    InferenceOptions,
    Predictor,
    gaussian_importance,
    tile_starts,
    tta_transforms,
)
from unetzoo.errors import ConfigError
from unetzoo.models import create_model
from unetzoo.runtime import Runtime

FP32 = Runtime.resolve("cpu", "fp32", channels_last=False)


def predictor(img_size: int, mode: str = "crop", overlap: float = 0.25, tta: str = "none",
              model: nn.Module | None = None, task: str = "multiclass",
              batch_size: int = 3) -> Predictor:
    torch.manual_seed(0)
    model = model if model is not None else create_model("unet", 3, 2, preset="tiny")
    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=img_size, resize_mode=mode)
    return Predictor(model, pre, task, InferenceOptions(FP32, batch_size=batch_size,
                                                        overlap=overlap, tta=tta))


def reference_blend(pred: Predictor, image: torch.Tensor) -> torch.Tensor:
    """Sliding window the plain way: one full-size sum of weighted tiles and of weights."""
    _, height, width = image.shape
    size = pred.preprocessing.img_size
    th, tw = min(size, height), min(size, width)
    weight = gaussian_importance(th, tw)
    total = torch.zeros(pred.model_num_classes, height, width)
    norm = torch.zeros(height, width)
    for y in tile_starts(height, th, pred.options.overlap):
        for x in tile_starts(width, tw, pred.options.overlap):
            with torch.no_grad():
                out = pred.model(image[None, :, y: y + th, x: x + tw])[0]
            total[:, y: y + th, x: x + tw] += out * weight
            norm[y: y + th, x: x + tw] += weight
    return total / norm


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
    pred = predictor(img_size=64)
    tiled_once = torch.cat(list(pred._tiled(image, pred._infer, 2)), dim=1)
    assert torch.allclose(tiled_once, direct, atol=1e-5)


@pytest.mark.parametrize("size", [(70, 90), (20, 100), (100, 17)])
def test_streamed_blend_equals_full_buffer_blend(size: tuple[int, int]) -> None:
    """Bands of finished rows give the same result as blending into full-size buffers,
    also when the image is smaller than a tile in one dimension; no band is taller than
    a tile."""
    image = torch.randn(3, *size)
    pred = predictor(img_size=32, overlap=0.5)
    bands = list(pred._tiled(image, pred._infer, pred.model_num_classes))
    assert all(band.shape[1] <= 32 for band in bands)
    assert sum(band.shape[1] for band in bands) == size[0]
    torch.testing.assert_close(torch.cat(bands, dim=1), reference_blend(pred, image),
                               atol=1e-5, rtol=1e-5)


def test_sliding_window_agrees_with_whole_image_inference() -> None:
    image = torch.randn(3, 70, 90)
    pred = predictor(img_size=32, overlap=0.5)
    out = pred.logits(image)
    assert out.shape == (2, 70, 90) and torch.isfinite(out).all()
    with torch.no_grad():
        whole = pred.model(image[None])[0]
    # a convolutional net sees nearly the same context in the tile centres
    assert (out.argmax(0) == whole.argmax(0)).float().mean() > 0.8


def test_an_image_as_read_from_disk_is_normalised_tile_by_tile() -> None:
    rng = np.random.default_rng(0)
    array = rng.random((50, 70, 3), dtype=np.float32)
    pred = predictor(img_size=32)
    from_tensor = pred.probabilities(pred.preprocessing.to_tensor(array))
    from_array = pred.probabilities(array)
    assert isinstance(from_array, np.ndarray) and from_array.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(from_array), from_tensor)


def test_resize_mode_returns_original_size() -> None:
    out = predictor(img_size=32, mode="resize").labels(torch.randn(3, 45, 61))
    assert out.shape == (45, 61) and out.dtype == torch.uint8


def test_gaussian_importance_peaks_in_the_centre() -> None:
    weight = gaussian_importance(9, 9)
    assert weight[4, 4] == 1.0 and weight.min() > 0 and weight[0, 0] < weight[2, 2]


def test_bfloat16_runtime_accumulates_in_float32() -> None:
    image = torch.randn(3, 70, 50)
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=32)
    torch.manual_seed(0)
    model = create_model("unet", 3, 2, preset="tiny")
    bf16 = Runtime.resolve("cpu", "bf16", channels_last=True)
    low = Predictor(model, pre, "multiclass", InferenceOptions(bf16)).logits(image)
    high = Predictor(model, pre, "multiclass", InferenceOptions(FP32)).logits(image)
    assert low.dtype == torch.float32 and low.shape == (2, 70, 50)
    assert (low.argmax(0) == high.argmax(0)).float().mean() > 0.95


class PointwiseNet(nn.Module):
    """A 1x1 convolution: equivariant to every flip and rotation."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 3
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("tta", ["flip", "flip-rot90"])
def test_tta_of_an_equivariant_model_equals_the_plain_prediction(tta: str) -> None:
    image = torch.randn(3, 45, 70)  # tiled, with edge tiles of their own size
    model = PointwiseNet()
    plain = predictor(32, model=model).probabilities(image)
    augmented = predictor(32, model=model, tta=tta).probabilities(image)
    torch.testing.assert_close(augmented, plain, atol=1e-6, rtol=1e-6)


def test_tta_averages_probabilities_of_the_transformed_images() -> None:
    image = torch.randn(3, 24, 24)  # one tile
    pred = predictor(32, tta="flip")
    model = pred.model
    with torch.no_grad():
        expected = sum(model(image[None].flip(dims)).flip(dims)[0].softmax(0)
                       for dims in [(), (3,), (2,), (2, 3)]) / 4
    torch.testing.assert_close(pred.probabilities(image), expected)
    with pytest.raises(ConfigError, match="averages probabilities"):
        pred.logits(image)


def test_tta_transforms_are_inverted() -> None:
    x = torch.randn(2, 3, 5, 7)
    pairs = tta_transforms("flip-rot90")
    assert len(pairs) == 8
    for transform, inverse in pairs:
        assert torch.equal(inverse(transform(x)), x)
    images = {transform(x).flatten().numpy().tobytes() for transform, _ in pairs[:4]}
    assert len(images) == 4
    with pytest.raises(ConfigError, match="tta"):
        tta_transforms("mirror")


def test_labels_are_post_processed() -> None:
    class Speckle(nn.Module):
        """Foreground logits wherever the first channel is positive."""
        num_classes = 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] * 100

    image = -torch.ones(3, 20, 20)
    image[0, 2:12, 2:12] = 1
    image[0, 5:8, 5:8] = -1  # a hole
    image[0, 16, 16] = 1  # a speck
    model = Speckle()
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=32)
    plain = Predictor(model, pre, "binary", InferenceOptions(FP32)).labels(image)
    assert plain[16, 16] == 1 and plain[6, 6] == 0
    post = PostProcessing(min_size=4, fill_holes=True)
    cleaned = Predictor(model, pre, "binary", InferenceOptions(FP32, postprocess=post))
    labels = cleaned.labels(image)
    assert labels[16, 16] == 0 and labels[6, 6] == 1 and labels.sum() == 100


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        InferenceOptions(FP32, overlap=1.0)
    with pytest.raises(ConfigError, match="batch"):
        InferenceOptions(FP32, batch_size=0)
    with pytest.raises(ConfigError, match="min-size"):
        PostProcessing(min_size=-1)


def test_attention_maps_are_tiled_and_blended_like_the_outputs() -> None:
    """A large image's attention maps are blended from tiles (bounded memory) exactly as
    the outputs are; a tile covering the image gives the model's own maps."""
    torch.manual_seed(0)
    model = create_model("attention_unet", 3, 2, preset="tiny").eval()
    image = torch.randn(3, 70, 90)
    pred = predictor(img_size=32, overlap=0.5, model=model)
    maps = pred.attention(image)
    assert maps.shape == (2, 70, 90) and maps.min() >= 0 and maps.max() <= 1

    def gates(batch: torch.Tensor) -> torch.Tensor:  # every map resized to the tile
        found = model.attention_maps(batch)
        return torch.cat([torch.nn.functional.interpolate(m, size=batch.shape[-2:],
                                                          mode="bilinear") for m in found], 1)

    _, height, width = image.shape
    weight = gaussian_importance(32, 32)
    total, norm = torch.zeros(2, height, width), torch.zeros(height, width)
    for y in tile_starts(height, 32, 0.5):
        for x in tile_starts(width, 32, 0.5):
            with torch.no_grad():
                total[:, y: y + 32, x: x + 32] += gates(image[None, :, y: y + 32,
                                                              x: x + 32])[0] * weight
            norm[y: y + 32, x: x + 32] += weight
    torch.testing.assert_close(maps, total / norm, atol=1e-5, rtol=1e-5)
    small = torch.randn(3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(pred.attention(small), gates(small[None])[0])
    with pytest.raises(ConfigError, match="no attention maps"):
        predictor(img_size=32).attention(small)


class BorderArtefact(nn.Module):
    """A 'network' whose output on an all-zero input is foreground along its top row and
    left column (as a U-Net's padding artefacts are), and otherwise follows its input."""

    num_classes = 1
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone() * 10
        out[..., 0, :] += 5.0
        out[..., :, 0] += 5.0
        return out - 1.0


@pytest.mark.parametrize("normalization", ["image", "dataset"])
def test_a_constant_image_under_per_image_normalisation_is_background(normalization: str
                                                                      ) -> None:
    """Normalised by its own statistics, a constant image is all zeros whatever its value:
    the model's answer there is its artefacts, so it is labelled background (and counted);
    under dataset normalisation its value means something and the model is asked."""
    pre = Preprocessing(1, (0.0,), (1.0,), img_size=32, normalization=normalization)
    predictor = Predictor(BorderArtefact(), pre, "binary",
                          InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False)))
    blank = np.zeros((24, 20), np.uint8)
    labels = predictor.labels(blank)
    assert labels.shape == (24, 20) and labels.dtype == np.uint8
    if normalization == "image":
        assert labels.max() == 0 and predictor.constant == 1
    else:
        assert labels[0].all() and predictor.constant == 0
    varied = blank.copy()
    varied[10:14, 8:12] = 200
    assert predictor.labels(varied)[10:14, 8:12].all()
    assert predictor.constant == (1 if normalization == "image" else 0)
