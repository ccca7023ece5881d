"""Writing masks and labels: tiled BigTIFF and OME-Zarr from bands of rows in bounded
memory, label TIFF and PNG, the pixel size kept, nothing half-written."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetzoo.data.io import read_mask
from unetzoo.data.large import PixelSize, open_large, read_pixel_size
from unetzoo.data.writers import (
    label_dtype,
    pyramid_shapes,
    write_label_png,
    write_label_tiff,
    write_ome_zarr,
    write_tiled,
    write_tiled_tiff,
)
from unetzoo.errors import ConfigError, DataError, RunError

zarr = pytest.importorskip("zarr")
SIZE = PixelSize(0.25, 0.5, "test")


def _labels(height: int, width: int, top: int = 0) -> np.ndarray:
    """Ids that change every few pixels, large enough to need 32 bits."""
    yy = np.arange(top, top + height, dtype=np.uint32)[:, None]
    return yy * 1000 + np.arange(width, dtype=np.uint32)[None] // 3


def _bands(height: int, width: int, rows: int) -> Iterator[np.ndarray]:
    for top in range(0, height, rows):
        yield _labels(min(rows, height - top), width, top)


def test_tiled_tiff_round_trips_with_its_pixel_size(tmp_path: Path) -> None:
    path = write_tiled_tiff(tmp_path / "out.ome.tif", _bands(300, 170, 37), (300, 170),
                            np.uint32, pixel_size=SIZE, tile=64)
    np.testing.assert_array_equal(tifffile.imread(path), _labels(300, 170))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (64, 64)
        assert tif.is_bigtiff and tif.is_ome and page.compression.name == "ADOBE_DEFLATE"
        assert page.resolution == pytest.approx((4e4, 2e4))  # pixels per cm
    found = read_pixel_size(path)
    assert found is not None and (found.x, found.y) == pytest.approx((0.25, 0.5))
    assert found.source == "OME metadata"
    np.testing.assert_array_equal(read_mask(path), _labels(300, 170))


def test_masks_write_as_uint8_with_zstd(tmp_path: Path) -> None:
    mask = (_labels(100, 90) % 7 == 0)
    bands = (mask[y: y + 30] for y in range(0, 100, 30))
    path = write_tiled_tiff(tmp_path / "m.tif", bands, (100, 90), np.uint8,
                            compression="zstd")
    back = tifffile.imread(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask.astype(np.uint8))


def test_bands_that_do_not_fit_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    target = tmp_path / "x.tif"
    with pytest.raises(DataError, match="bands add up to 90 rows; the image has 100"):
        write_tiled_tiff(target, _bands(90, 40, 30), (100, 40), np.uint32)
    with pytest.raises(DataError, match="do not fit uint16"):
        write_tiled_tiff(target, _bands(100, 40, 30), (100, 40), np.uint16)
    with pytest.raises(DataError, match=r"a band of shape \(30, 41\)"):
        write_tiled_tiff(target, _bands(100, 41, 30), (100, 40), np.uint32)

    def killed() -> Iterator[np.ndarray]:
        yield _labels(64, 40)
        raise KeyboardInterrupt  # a kill in the middle of the image

    with pytest.raises(KeyboardInterrupt):
        write_ome_zarr(tmp_path / "x.ome.zarr", killed(), (100, 40), np.uint32, chunk=32)
    with pytest.raises(KeyboardInterrupt):
        write_tiled_tiff(target, killed(), (100, 40), np.uint32, tile=32)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
    with pytest.raises(DataError, match="bands add up to more than the 96 rows"):
        write_tiled_tiff(target, _bands(100, 40, 32), (96, 40), np.uint32, tile=32)
    assert list(tmp_path.iterdir()) == []
    write_tiled_tiff(target, _bands(100, 40, 30), (100, 40), np.uint32)
    with pytest.raises(RunError, match="exists"):
        write_tiled_tiff(target, _bands(100, 40, 30), (100, 40), np.uint32)
    with pytest.raises(ConfigError, match="multiple of 16"):
        write_tiled_tiff(target, [], (100, 40), np.uint32, tile=100, overwrite=True)


def test_tiled_writers_hold_one_row_of_tiles(tmp_path: Path) -> None:
    height, width = 3000, 1000  # 12 MB as uint32; a row of 256-pixel tiles is 1 MB
    for write, name in ((write_tiled_tiff, "w.tif"), (write_ome_zarr, "w.ome.zarr")):
        write(tmp_path / "warm" / name, _bands(64, 64, 64), (64, 64), np.uint32)  # imports
        tracemalloc.start()
        try:
            write(tmp_path / name, _bands(height, width, 100), (height, width), np.uint32)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6_000_000, f"{name}: peak {peak:,} bytes"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_has_a_pyramid_axes_and_scales(tmp_path: Path, version: str) -> None:
    path = write_ome_zarr(tmp_path / "out.ome.zarr", _bands(300, 170, 37), (300, 170),
                          np.uint32, pixel_size=SIZE, chunk=64, version=version)
    root = zarr.open_group(path, mode="r")
    attrs = dict(root.attrs)
    if version == "0.5":
        assert attrs["ome"]["version"] == "0.5"
        assert json.loads((path / "zarr.json").read_text())["zarr_format"] == 3
        attrs = attrs["ome"]
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["y", "x"]
    assert multiscale["axes"][0]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    # 300 x 170 -> 150 x 85 -> 75 x 43 -> 38 x 22, the first to fit one chunk of 64
    assert scales == [[0.5, 0.25], [1.0, 0.5], [2.0, 1.0], [4.0, 2.0]]
    labels = _labels(300, 170)
    for level, step in enumerate((1, 2, 4, 8)):
        np.testing.assert_array_equal(root[str(level)][:], labels[::step, ::step])
    with open_large(path) as image:
        assert image.levels == [(300, 170), (150, 85), (75, 43), (38, 22)]
        assert (image.pixel_size.x, image.pixel_size.y) == pytest.approx((0.25, 0.5))
    assert pyramid_shapes((300, 170), 80) == [(300, 170), (150, 85), (75, 43)]
    assert pyramid_shapes((300, 170), 64, levels=1) == [(300, 170)]


def test_write_tiled_picks_the_format_by_name(tmp_path: Path) -> None:
    write_tiled(tmp_path / "a.ome.zarr", _bands(40, 30, 7), (40, 30), np.uint16)
    write_tiled(tmp_path / "a.ome.tif", _bands(40, 30, 7), (40, 30), np.uint32)
    assert (tmp_path / "a.ome.zarr" / ".zattrs").is_file()
    assert tifffile.imread(tmp_path / "a.ome.tif").shape == (40, 30)
    with pytest.raises(ConfigError, match="tiled TIFF"):
        write_tiled(tmp_path / "a.png", _bands(40, 30, 7), (40, 30))


def test_label_tiff_is_16_bit_unless_ids_need_32(tmp_path: Path) -> None:
    small = (_labels(20, 30) % 60_000).astype(np.int64)
    write_label_tiff(tmp_path / "s.tif", small, SIZE)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.is_imagej and tif.pages[0].dtype == np.uint16
    np.testing.assert_array_equal(read_mask(tmp_path / "s.tif"), small)
    assert read_pixel_size(tmp_path / "s.tif") == PixelSize(0.25, 0.5, "ImageJ metadata")
    large = _labels(20, 30) + 70_000
    write_label_tiff(tmp_path / "l.tif", large, SIZE)
    back = tifffile.imread(tmp_path / "l.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, large)
    assert read_pixel_size(tmp_path / "l.tif").source == "OME metadata"
    write_label_tiff(tmp_path / "m.tif", small > 5, bits=8)
    assert tifffile.imread(tmp_path / "m.tif").dtype == np.uint8
    with pytest.raises(DataError, match="negative labels"):
        write_label_tiff(tmp_path / "n.tif", small - 10)
    with pytest.raises(DataError, match="whole numbers"):
        write_label_tiff(tmp_path / "f.tif", small + 0.5)


def test_label_png_refuses_labels_that_do_not_fit(tmp_path: Path) -> None:
    ids = _labels(20, 30) % 60_000
    write_label_png(tmp_path / "a.png", ids, SIZE)
    with Image.open(tmp_path / "a.png") as img:
        assert img.mode.startswith("I;16")
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), ids)
    found = read_pixel_size(tmp_path / "a.png")
    assert (found.x, found.y) == pytest.approx((0.25, 0.5), rel=1e-5)
    write_label_png(tmp_path / "b.png", ids % 200)
    with Image.open(tmp_path / "b.png") as img:
        assert img.mode == "L"
    with pytest.raises(DataError, match=r"c\.png: holds labels up to 89,009; a PNG holds 16 "):
        write_label_png(tmp_path / "c.png", _labels(20, 30) + 70_000)
    with pytest.raises(DataError, match="more than a 8-bit image holds"):
        write_label_png(tmp_path / "d.png", ids, bits=8)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "d.png").exists()
    assert label_dtype(255) == np.uint8 and label_dtype(256) == np.uint16
    assert label_dtype(70_000) == np.uint32
