"""The Python API is as careful as the command line: a numpy image is read by the rule a file
holding its pixels is read by, so `Predictor.open(ckpt).labels(array)` equals, bit for bit,
the mask `unetzoo predict` writes; numpy in gives numpy out; the options types are public."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import unetzoo
from unetzoo.cli import main
from unetzoo.data.io import image_from_array, read_image
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import DataError
from unetzoo.runtime import Runtime

HEIGHT, WIDTH = 96, 80  # larger than the 64-pixel patch: tiled and blended
FP32 = Runtime.resolve("cpu", "fp32", channels_last=False, backend="torch")
# the default backend (auto) runs OpenVINO on CPUs where it is installed
OPENVINO = importlib.util.find_spec("openvino") is not None and not torch.cuda.is_available()


def field(seed: int, channels: int = 1) -> np.ndarray:
    """A smooth random image in [0, 1], `H x W x channels`: blobs of several sizes and a
    little noise (content a random network answers to with mixed labels)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    out = np.zeros((HEIGHT, WIDTH, channels))
    for c in range(channels):
        for _ in range(12):
            cy, cx, r = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(4, 20)
            out[..., c] += rng.uniform(-1, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2)
                                                       / (2 * r * r))
    out += rng.normal(0, 0.05, out.shape)
    return (out - out.min()) / (out.max() - out.min())


# name -> (file name, model channels, stored pixels); each file is read back for the API by
# the library a user would use (Pillow for PNGs, tifffile for TIFFs)
def cases() -> dict[str, tuple[str, int, np.ndarray]]:
    return {
        "8-bit RGB PNG": ("rgb8.png", 3, np.round(field(1, 3) * 255).astype(np.uint8)),
        "8-bit gray PNG": ("gray8.png", 3, np.round(field(2)[..., 0] * 255).astype(np.uint8)),
        "16-bit gray TIFF": ("gray16.tif", 1,
                             np.round(field(3)[..., 0] * 40000 + 3000).astype(np.uint16)),
        "float32 TIFF": ("float32.tif", 1, field(4)[..., 0].astype(np.float32)),
    }


def user_reads(path: Path) -> np.ndarray:
    """The pixels as numpy hands them to a user."""
    return tifffile.imread(path) if path.suffix == ".tif" else np.asarray(Image.open(path))


def calibrated_checkpoint(path: Path, channels: int, image: Path) -> Path:
    """A tiny random U-Net normalising with fixed statistics (so that the scale of the
    pixels matters), its output bias set so that about half of `image` is foreground."""
    torch.manual_seed(channels)
    model = unetzoo.create_model("unet", channels, 1, preset="tiny").eval()
    pre = Preprocessing(channels, (0.45,) * channels, (0.2,) * channels, img_size=64)
    logits = Predictor(model, pre, "binary", InferenceOptions(FP32)).logits(
        read_image(image, channels))
    with torch.no_grad():
        model.head.bias -= float(np.median(logits))
    return unetzoo.save_checkpoint(path, model, task="binary", preprocessing=pre)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Path]]:
    """One folder of images per model (by input channels) and the two checkpoints."""
    root = tmp_path_factory.mktemp("api")
    for name, (file, channels, pixels) in cases().items():
        folder = root / f"in{channels}"
        folder.mkdir(exist_ok=True)
        if file.endswith(".png"):
            Image.fromarray(pixels).save(folder / file)
        else:
            tifffile.imwrite(folder / file, pixels)
        assert np.array_equal(user_reads(folder / file), pixels), name
    models = {c: calibrated_checkpoint(root / f"model{c}" / "best.pt", c, root / f"in{c}" / f)
              for c, f in ((3, "rgb8.png"), (1, "gray16.tif"))}
    return root, models


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_api_and_cli_give_identical_labels(inputs, tmp_path: Path, backend: str) -> None:
    """`unetzoo predict` and `Predictor.open(...).labels(pixels as numpy reads them)` agree
    on every pixel of 8-bit RGB, 8-bit gray (replicated to 3 channels), 16-bit gray and
    float32 images, through the default backend and through torch. Before, an 8-bit image
    as numpy hands it differed on 9.3% of the pixels."""
    root, models = inputs
    flags = [] if backend == "auto" else ["--backend", "torch"]
    options = InferenceOptions() if backend == "auto" else InferenceOptions(
        Runtime.resolve(backend="torch"))
    for channels, model in models.items():
        out = tmp_path / f"out{channels}"
        assert main(["predict", "--model", str(model), "--input", str(root / f"in{channels}"),
                     "--out", str(out), "--no-progress", *flags]) == 0
        predictor = Predictor.open(model, options)
        assert predictor.runtime.backend == ("openvino" if backend == "auto" and OPENVINO
                                             else "torch")
        for name, (file, wanted, _) in cases().items():
            if wanted != channels:
                continue
            written = np.asarray(Image.open(out / f"{Path(file).stem}.png"))
            labels = predictor.labels(user_reads(root / f"in{channels}" / file))
            assert isinstance(labels, np.ndarray) and labels.dtype == np.uint8, name
            assert labels.shape == written.shape == (HEIGHT, WIDTH), name
            assert np.array_equal(labels * 255, written), (
                f"{name} ({backend}): {(labels * 255 != written).mean():.1%} of the pixels "
                "differ from unetzoo predict")
            assert 0.05 < labels.mean() < 0.95, f"{name}: labels too uniform to compare"


def test_the_scale_of_the_pixels_matters_to_these_models(inputs, caplog) -> None:
    """The comparison above can fail: an 8-bit image cast to float (0..255 taken as stored,
    as a float TIFF is) gives other labels, and says so in one line."""
    root, models = inputs
    predictor = Predictor.open(models[3], InferenceOptions(FP32))
    pixels = user_reads(root / "in3" / "rgb8.png")
    right = predictor.labels(pixels)
    assert np.array_equal(right, predictor.labels(pixels.astype(np.float32) / 255))
    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        wrong = predictor.labels(pixels.astype(np.float32))
        predictor.labels(pixels.astype(np.float32))  # said once
    assert (wrong != right).mean() > 0.05
    said = [m for m in caplog.messages if "taken as stored" in m]
    assert len(said) == 1 and "values in [0, 255]" in said[0]


def write(path: Path, pixels: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, pixels)
    elif path.suffix == ".tif":
        tifffile.imwrite(path, pixels)
    else:
        Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("file,pixels,channels", [
    ("rgb.png", np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4, 3),
    ("rgb_to_gray.png", np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4, 1),
    ("gray_to_rgb.png", np.arange(20, dtype=np.uint8).reshape(4, 5) * 12, 3),
    ("gray16.tif", np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000, 1),
    ("signed16.tif", np.arange(-10, 10, dtype=np.int16).reshape(4, 5) * 3000, 1),
    ("signed8.tif", np.arange(-10, 10, dtype=np.int8).reshape(4, 5) * 12, None),
    ("float.tif", np.linspace(-2, 300, 20, dtype=np.float32).reshape(4, 5), 1),
    ("float64.npy", np.linspace(0, 1, 60).reshape(4, 5, 3), 3),
    ("float16.npy", np.linspace(0, 1, 20, dtype=np.float16).reshape(4, 5), 1),
    ("planar.npy", np.arange(3 * 4 * 6, dtype=np.uint8).reshape(3, 4, 6), 3),
    ("batch.npy", np.arange(4 * 6 * 2, dtype=np.uint16).reshape(1, 4, 6, 2), 2),
    ("mask.npy", np.eye(4, 5, dtype=bool), 1),
])
def test_an_array_is_read_as_a_file_holding_its_pixels(tmp_path: Path, file: str,
                                                        pixels: np.ndarray,
                                                        channels: int | None) -> None:
    """dtype, range and layout: the array's image equals `read_image` of a file of it."""
    expected = read_image(write(tmp_path / file, pixels), channels)
    got = image_from_array(pixels, channels)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_a_one_bit_image_reads_as_a_bool_array(tmp_path: Path) -> None:
    mask = np.eye(6, 7, dtype=bool)
    Image.fromarray(mask).save(tmp_path / "bits.png")  # mode "1"
    assert np.array_equal(image_from_array(mask), read_image(tmp_path / "bits.png"))
    assert set(np.unique(image_from_array(mask))) == {0.0, 1.0}


def test_a_float32_image_needs_no_copy() -> None:
    image = np.random.default_rng(0).random((8, 9, 3), dtype=np.float32)
    assert np.shares_memory(image_from_array(image, 3), image)


@pytest.mark.parametrize("array,channels,match", [
    (np.zeros((8, 8), np.int64), 1, r"dtype int64: 64-bit integers do not say the range"),
    (np.zeros((8, 8, 3), np.int32), 3, r"32-bit integers .*astype\(np.uint8\)"),
    (np.zeros((8, 8), np.uint32), 1, r"32-bit integers"),
    (np.zeros((8, 8), np.complex64), 1, r"images are bool, 8- or 16-bit integers, or floats"),
    (np.full((8, 8), np.nan, np.float32), 1, r"NaN or infinite"),
    (np.full((8, 8), np.inf), 1, r"NaN or infinite"),
    (np.zeros((0, 8), np.uint8), 1, r"empty"),
    (np.zeros((2, 3, 8, 8), np.uint8), 3, r"shape \(2, 3, 8, 8\).*not laid out as an image"),
    (np.zeros((8, 8, 4), np.uint8), 3,
     r"shape \(8, 8, 4\) and dtype uint8: 4 channels, the model expects 3; if the last is "
     r"alpha, pass image\[\.\.\., :3\]"),
    (np.zeros((8, 8, 2), np.uint8), 3, r"2 channels, the model expects 3$"),
])
def test_what_an_array_does_not_say_is_refused_in_one_line(array: np.ndarray, channels: int,
                                                           match: str) -> None:
    with pytest.raises(DataError, match=match) as caught:
        image_from_array(array, channels)
    assert "\n" not in str(caught.value)


def tiny_predictor(model: torch.nn.Module | None = None, normalization: str = "dataset",
                   channels: int = 3, classes: int = 2) -> Predictor:
    torch.manual_seed(0)
    model = model or unetzoo.create_model("unet", channels, classes, preset="tiny")
    pre = Preprocessing(channels, (0.5,) * channels, (0.25,) * channels, img_size=32,
                        normalization=normalization)
    return Predictor(model, pre, "multiclass", InferenceOptions(FP32))


def test_numpy_in_numpy_out_torch_in_torch_out() -> None:
    predictor = tiny_predictor()
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    tensor = predictor.preprocessing.to_tensor(pixels / np.float32(255))
    for method, dtype in (("labels", np.uint8), ("probabilities", np.float32),
                          ("logits", np.float32)):
        from_array = getattr(predictor, method)(pixels)
        from_tensor = getattr(predictor, method)(tensor)
        assert isinstance(from_array, np.ndarray) and from_array.dtype == dtype, method
        assert isinstance(from_tensor, torch.Tensor), method
        torch.testing.assert_close(torch.from_numpy(from_array), from_tensor, rtol=0,
                                   atol=1e-5)
    assert predictor.labels(pixels).shape == (40, 50)
    assert predictor.probabilities(pixels).shape == (2, 40, 50)
    gated = tiny_predictor(unetzoo.create_model("attention_unet", 3, 2, preset="tiny").eval())
    maps = gated.attention(pixels)
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(maps), gated.attention(tensor))


def test_a_gray_array_meets_a_three_channel_model_as_a_gray_file_does() -> None:
    predictor = tiny_predictor()
    gray = np.random.default_rng(1).integers(0, 256, (40, 36), dtype=np.uint8)
    assert np.array_equal(predictor.labels(gray),
                          predictor.labels(np.repeat(gray[..., None], 3, axis=2)))


def test_tensors_are_model_input_and_other_things_are_refused() -> None:
    predictor = tiny_predictor()
    with pytest.raises(DataError, match=r"dtype torch.uint8: a tensor is taken as normalised "
                                        r"float C x H x W model input"):
        predictor.labels(torch.zeros(3, 20, 20, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"shape \(1, 3, 20, 20\)"):
        predictor.labels(torch.zeros(1, 3, 20, 20))
    with pytest.raises(DataError, match=r"not Image; for a PIL image pass np.asarray\(image\)"):
        predictor.labels(Image.new("RGB", (20, 20)))
    with pytest.raises(DataError, match="int64"):
        predictor.probabilities(np.zeros((20, 20, 3), dtype=np.int64))


def test_a_float_range_is_said_only_where_it_matters(caplog) -> None:
    """Per-image normalisation does not care about the scale of the pixels: no line."""
    pixels = np.random.default_rng(2).random((30, 30, 3), dtype=np.float32) * 255
    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        tiny_predictor(normalization="image").labels(pixels)
        tiny_predictor().labels(pixels / 255)
    assert not [m for m in caplog.messages if "taken as stored" in m]


def test_a_foreign_package_refuses_arrays() -> None:
    """A bioimage.io package of another tool reads files by its own preprocessing."""
    model = unetzoo.create_model("unet", 3, 2, preset="tiny")
    model.read_input = lambda path: torch.zeros(3, 8, 8)
    with pytest.raises(DataError, match="reads image files by its own preprocessing"):
        tiny_predictor(model).labels(np.zeros((8, 8, 3), np.uint8))


def test_the_options_types_are_public() -> None:
    from unetzoo.engine.inference.postprocess import PostProcessing

    assert unetzoo.InferenceOptions is InferenceOptions
    assert unetzoo.Runtime is Runtime
    assert unetzoo.PostProcessing is PostProcessing
    assert {"InferenceOptions", "Runtime", "PostProcessing"} <= set(unetzoo.__all__)
    options = unetzoo.InferenceOptions(unetzoo.Runtime.resolve(backend="torch"),
                                       postprocess=unetzoo.PostProcessing(min_size=4))
    assert options.postprocess.min_size == 4
