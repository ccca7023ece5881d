"""Whole-slide images: `predict` reads a large image region by region and writes its output
tile by tile (a tiled BigTIFF or OME-Zarr), with the same pixels as the whole-image path;
objects on band and tile seams are neither cut nor counted twice. (Peak memory is a
benchmark: benchmarks/large_image.py --predict-slide.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
from unetzoo.cli import main
from unetzoo.data.io import read_image
from unetzoo.data.large import open_large
from unetzoo.data.synthetic import synthesize
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.instance import InstanceDecoding
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import ConfigError
from unetzoo.instances.labels import Thresholds
from unetzoo.instances.matching import label_overlap, match
from unetzoo.instances.targets import encode, get_representation
from unetzoo.models import create_model
from unetzoo.runtime import Runtime

SHAPE = (1000, 900)  # 0.9 megapixels: large above --large-megapixels 0.5
FP32 = ["--device", "cpu", "--precision", "fp32", "--backend", "torch", "--no-progress"]


def runtime() -> Runtime:
    return Runtime.resolve("cpu", "fp32", channels_last=False, backend="torch")


def slide_pixels(shape: tuple[int, int]) -> np.ndarray:
    """Synthetic nuclei tiled to `shape`, uint8 RGB."""
    image, _ = synthesize(0, 0, 256)
    reps = (-(-shape[0] // 256), -(-shape[1] // 256), 1)
    return np.ascontiguousarray(np.tile(image, reps)[: shape[0], : shape[1]])


def binary_checkpoint() -> Checkpoint:
    """A tiny untrained U-Net (patch 128: its tiles do not line up with the TIFF's 256) whose
    head is shifted so that about half of the slide's pixels are foreground: many pixels lie
    near the threshold, so any difference in the inputs would show."""
    torch.manual_seed(0)
    model = create_model("unet", 3, 1, preset="tiny").eval()
    pre = Preprocessing(3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), img_size=128)
    with torch.no_grad():
        logits = model(pre.to_tensor(slide_pixels((128, 128)).astype(np.float32) / 255)[None])
    state = model.state_dict()
    head = [k for k in state if k.endswith(".bias") and state[k].shape == (1,)][-1]
    state[head] = state[head] - logits.median()
    return Checkpoint(model.unetzoo_spec, "binary", ("nucleus",), pre, state)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """(checkpoint, tiled TIFF of SHAPE with a 0.5 µm pixel size, its whole-image mask)."""
    root = tmp_path_factory.mktemp("slide")
    checkpoint = save_checkpoint(root / "best.pt", binary_checkpoint())
    path = root / "in" / "slide.ome.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, slide_pixels(SHAPE), tile=(256, 256), photometric="rgb",
                     compression="zlib", metadata={"axes": "YXS", "PhysicalSizeX": 0.5,
                                                   "PhysicalSizeY": 0.5})
    predictor = Predictor.open(checkpoint, InferenceOptions(runtime()))
    whole = predictor.labels(read_image(path, 3))  # the whole-image path, in memory
    return checkpoint, path, whole


def test_a_large_tiff_is_predicted_region_by_region_with_the_whole_images_pixels(
        slide: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys) -> None:
    checkpoint, path, whole = slide
    assert 0.2 < whole.mean() < 0.8  # a real mix of foreground and background
    assert main(["predict", "--model", str(checkpoint), "--input", str(path.parent),
                 "--output", str(tmp_path / "out"), "--large-megapixels", "0.5",
                 *FP32]) == 0
    target = tmp_path / "out" / "slide.tif"
    said = [m for m in capsys.readouterr().out.splitlines() if "region by region" in m]
    assert said == [f"{path}: 1000 x 900 (1 megapixels): predicted region by region (tiles "
                    f"read as needed, memory bounded by bands of rows) -> {target}"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["slide.tif"]
    with tifffile.TiffFile(target) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and tif.is_ome and page.is_tiled and page.tilelength == 256
        mask = page.asarray()
    with open_large(target) as written:
        assert written.pixel_size is not None
        assert (written.pixel_size.x, written.pixel_size.y) == pytest.approx((0.5, 0.5))
    # the same tiles, batches and normalisation: the same numbers, so exactly equal
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask, whole * 255)


def test_ome_zarr_output_is_readable_with_zarr_and_equal(
        slide: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    import zarr

    checkpoint, path, whole = slide
    assert main(["predict", "--model", str(checkpoint), "--input", str(path),
                 "--output", str(tmp_path / "out"), "--large-megapixels", "0.5",
                 "--large-format", "ome-zarr", *FP32]) == 0
    target = tmp_path / "out" / "slide.ome.zarr"
    group = zarr.open_group(target, mode="r")
    scale = group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert scale["scale"] == pytest.approx([0.5, 0.5])
    np.testing.assert_array_equal(np.asarray(group["0"]), whole * 255)


def test_small_images_keep_the_whole_image_path(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "best.pt", binary_checkpoint())
    tifffile.imwrite(tmp_path / "small.tif", slide_pixels((200, 180)), tile=(64, 64),
                     photometric="rgb")
    assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "small.tif"),
                 "--output", str(tmp_path / "out"), *FP32]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]


def test_outputs_needing_the_whole_image_are_refused_before_any_work(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "best.pt", binary_checkpoint())
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, slide_pixels((300, 300)), tile=(64, 64), photometric="rgb")
    for flags, why in ((["--min-size", "9"], "--min-size / --fill-holes"),
                       (["--table"], "--table")):
        with pytest.raises(ConfigError, match=rf"^{path}: 300 x 300 pixels \(0 megapixels, 1 "
                                              rf"such input\(s\)\) is predicted region by region "
                                              rf"\(more than --large-megapixels 0.01\), where "
                                              rf"{why}"):
            from unetzoo.engine.inference.predict import predict_paths

            options = InferenceOptions(runtime()) if "--table" in flags else \
                InferenceOptions(runtime(), postprocess=__import__(
                    "unetzoo.engine.inference.postprocess",
                    fromlist=["PostProcessing"]).PostProcessing(9))
            predict_paths(checkpoint, path, tmp_path / "out", options, progress=False,
                          objects=("table",) if "--table" in flags else (),
                          large_megapixels=0.01)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class HoverOfIds(nn.Module):
    """A 'network' that reads a label image (ids / 100) and returns its HoVer-Net targets
    (foreground as logits, offsets as they are): each tile's outputs are those of the
    objects it sees, so tiles disagree where objects cross their edges, as a real model's
    do, and the blended outputs are what both paths decode."""

    num_classes = 3
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([torch.from_numpy(encode((b[0] * 100).round().numpy().astype(
            np.int32), "hover").targets) for b in x])
        out[:, 0] = torch.logit(out[:, 0].clamp(1e-4, 1 - 1e-4))
        return out


def seam_objects(shape: tuple[int, int], rows: int, margin: int, stride: int
                 ) -> np.ndarray:
    """Discs (ids 1..N) centred exactly on band seams (multiples of `rows`), on the edges of
    the decoding windows (seam - margin, seam + 2 margin), on tile seams (multiples of the
    tile stride) and between them, across the whole width."""
    height, width = shape
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:height, :width]
    centres = []
    for seam in range(rows, height, rows):
        for y in (seam, seam - 1, seam - margin, seam + 2 * margin, seam + stride // 2):
            centres += [(y, x) for x in range(20 + (y % 3) * 7, width - 15, 52)]
    centres += [(y, x) for y in range(stride, height, stride) for x in (stride, 3 * stride)]
    for y, x in centres:
        r = 8 + (x * 7 + y) % 9  # radii 8..16: objects at most 33 rows tall
        if 0 <= y < height and labels[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].any():
            continue  # objects touch at most along their rims, never overlap much
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = labels.max() + 1
    return labels


def test_objects_on_band_and_tile_seams_are_neither_cut_nor_counted_twice(tmp_path: Path
                                                                          ) -> None:
    """The instance task band by band (`label_bands` on a tiled TIFF read region by region)
    against the whole image decoded at once (`labels`): the same objects."""
    shape, rows, margin, size = (560, 420), 128, 48, 64
    truth = seam_objects(shape, rows, margin, stride=48)
    assert truth.max() > 60
    path = tmp_path / "ids.tif"
    tifffile.imwrite(path, (truth / 100).astype(np.float32), tile=(256, 256))
    decoding = InstanceDecoding(get_representation("hover"), Thresholds(0.5, 0.5))
    predictor = Predictor(HoverOfIds(), Preprocessing(1, (0.0,), (1.0,), img_size=size),
                          "instance", InferenceOptions(runtime()), instance=decoding)
    whole = predictor.labels(read_image(path, 1))
    with open_large(path, 1) as image:
        bands = list(predictor.label_bands(image, rows=rows, margin=margin))
    assert [top for top, _ in bands] == list(range(0, shape[0], rows))
    banded = np.concatenate([band for _, band in bands])
    assert banded.dtype == np.uint32 and banded.shape == shape
    ids = np.unique(banded[banded > 0])
    assert ids.tolist() == list(range(1, ids.size + 1))  # unique over the image, no gaps
    n_whole = np.unique(whole[whole > 0]).size
    assert ids.size == n_whole >= 0.95 * truth.max()
    pairs = match(label_overlap(whole, banded.astype(np.int64)), 0.5)
    f1 = 2 * pairs.tp / (pairs.n_true + pairs.n_pred)
    assert f1 >= 0.98, f1
    assert float(pairs.iou.mean()) >= 0.98
    # every object is one connected piece with one id (none cut at a seam)
    from scipy import ndimage

    pieces = sum(ndimage.label(banded == i)[1] for i in ids)
    assert pieces == ids.size


def test_an_image_within_one_band_decodes_exactly_as_whole(tmp_path: Path) -> None:
    truth = seam_objects((120, 150), 1000, 48, 48)
    decoding = InstanceDecoding(get_representation("hover"), Thresholds(0.5, 0.5))
    predictor = Predictor(HoverOfIds(), Preprocessing(1, (0.0,), (1.0,), img_size=64),
                          "instance", InferenceOptions(runtime()), instance=decoding)
    image = (truth / 100).astype(np.float32)[..., None]
    (top, band), = predictor.label_bands(image)
    assert top == 0
    np.testing.assert_array_equal(band, predictor.labels(image))


def test_a_region_that_cannot_be_read_fails_that_image_and_leaves_no_output(
        slide: tuple[Path, Path, np.ndarray], tmp_path: Path, monkeypatch) -> None:
    from unetzoo.data.large import LargeImage
    from unetzoo.engine.inference.predict import PredictionFailures, predict_paths
    from unetzoo.errors import DataError

    checkpoint, path, _ = slide
    read, calls = LargeImage.read_region, []

    def failing(self: LargeImage, *args: int, **kwargs: int) -> np.ndarray:
        calls.append(args)
        if len(calls) == 12:  # some bands are written by then
            raise DataError("cannot read region (broken tile)", self.path)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(LargeImage, "read_region", failing)
    with pytest.raises(PredictionFailures, match=r"1 of 1 image\(s\) could not be read or "
                                                 r"predicted: slide.ome.tif \(cannot read "
                                                 r"region \(broken tile\)\)"):
        predict_paths(checkpoint, path, tmp_path / "out", InferenceOptions(runtime()),
                      progress=False, large_megapixels=0.5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["unreadable.txt"]


def test_an_instance_model_writes_uint32_objects_tile_by_tile(tmp_path: Path) -> None:
    """`predict` on a large image with an (untrained) instance model: a uint32 label BigTIFF
    whose foreground is the whole-image path's exactly and whose objects match its objects.
    Its objects are blobs up to 270 rows tall, far taller than the stitching margin (a
    patch, 32 rows): they go on across bands with their ids (`stitch_objects`)."""
    from tests.engine.test_instance_task import instance_checkpoint

    checkpoint = save_checkpoint(tmp_path / "best.pt", instance_checkpoint())
    path = tmp_path / "in" / "gray.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, slide_pixels((400, 300))[..., 0], tile=(256, 256),
                     resolution=(1e4 / 0.4, 1e4 / 0.4), resolutionunit="CENTIMETER")
    whole = Predictor.open(checkpoint, InferenceOptions(runtime())).labels(read_image(path, 1))
    assert main(["predict", "--model", str(checkpoint), "--input", str(path), "--output",
                 str(tmp_path / "out"), "--large-megapixels", "0.1", *FP32]) == 0
    with open_large(tmp_path / "out" / "gray.tif") as written:
        assert written.pixel_size is not None and written.pixel_size.x == pytest.approx(0.4)
        assert written.dtype == np.uint32
        labels = tifffile.imread(tmp_path / "out" / "gray.tif")
    np.testing.assert_array_equal(labels > 0, whole > 0)
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, ids.size + 1))
    pairs = match(label_overlap(whole, labels.astype(np.int64)), 0.5)
    assert 2 * pairs.tp / (pairs.n_true + pairs.n_pred) >= 0.98  # 0.991 measured
