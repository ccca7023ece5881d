"""Large images read region by region: the same values and channels as `read_image`, pixel
sizes from every kind of metadata, and memory bounded by the region (tracemalloc)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetzoo.data.io import read_image
from unetzoo.data.large import PixelSize, open_large, pixel_size, read_pixel_size
from unetzoo.errors import DataError

zarr = pytest.importorskip("zarr")


def _pattern(height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    yy = np.arange(height, dtype=np.int32)[:, None]
    xx = np.arange(width, dtype=np.int32)[None]
    planes = [(yy * 7 + xx * 3 + 50 * c) % np.iinfo(dtype).max for c in range(channels)]
    return np.dstack(planes).astype(dtype) if channels > 1 else planes[0].astype(dtype)


def _same_as_read_image(path: Path, region=(5, 70, 9, 101), channels=None) -> np.ndarray:
    y0, y1, x0, x1 = region
    whole = read_image(path, channels)
    with open_large(path, channels) as image:
        part = image.read_region(y0, y1, x0, x1)
        assert image.shape == whole.shape[:2] and image.channels == whole.shape[2]
    if channels is None:
        np.testing.assert_array_equal(part, whole[y0:y1, x0:x1])
    else:  # RGB to luminance: a matrix product, rounded as its BLAS blocks it
        np.testing.assert_allclose(part, whole[y0:y1, x0:x1], atol=1e-6)
    return part


@pytest.mark.parametrize("options", [
    {"tile": (32, 32), "compression": "zlib"},
    {"tile": (32, 48), "compression": "zstd", "bigtiff": True},
    {"compression": "lzw", "rowsperstrip": 7},
    {},  # uncompressed, contiguous: memory-mapped
])
def test_tiff_regions_match_read_image(tmp_path: Path, options: dict) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _pattern(150, 130), photometric="rgb", **options)
    _same_as_read_image(tmp_path / "x.tif")
    _same_as_read_image(tmp_path / "x.tif", channels=1)
    with open_large(tmp_path / "x.tif") as image:
        assert image.reader == ("memmap" if not options else "tiff")
        assert image.dtype == np.uint8 and image.scale == pytest.approx(1 / 255)
        assert image.scale_rule == "uint8 / 255" and image.axes == "YXS"


def test_tiff_channel_rules_hold_in_regions(tmp_path: Path) -> None:
    deep = _pattern(96, 80, 2, np.uint16)
    tifffile.imwrite(tmp_path / "two.tif", deep, tile=(32, 32), compression="zlib",
                     photometric="minisblack", planarconfig="contig")
    assert _same_as_read_image(tmp_path / "two.tif", (3, 90, 4, 77)).shape[2] == 2
    rgba = _pattern(96, 80, 4)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, tile=(32, 32), photometric="rgb",
                     extrasamples=["unassalpha"])
    assert _same_as_read_image(tmp_path / "rgba.tif", (0, 96, 0, 80)).shape[2] == 3
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(_pattern(96, 80), -1, 0),
                     photometric="rgb", planarconfig="separate", tile=(32, 32))
    _same_as_read_image(tmp_path / "planar.tif", (5, 70, 9, 77))
    tifffile.imwrite(tmp_path / "cyx.tif", np.moveaxis(deep, -1, 0), imagej=True,
                     metadata={"axes": "CYX"})
    assert _same_as_read_image(tmp_path / "cyx.tif", (5, 70, 9, 77)).shape[2] == 2
    palette = (np.arange(256 * 3, dtype=np.uint16).reshape(3, 256) * 80)
    tifffile.imwrite(tmp_path / "pal.tif", _pattern(96, 80, 1), photometric="palette",
                     colormap=palette, tile=(32, 32))
    with open_large(tmp_path / "pal.tif") as image:
        assert image.dtype == np.uint16 and image.channels == 3
    _same_as_read_image(tmp_path / "pal.tif", (5, 70, 9, 77))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 32, 32), np.uint8),
                     photometric="minisblack")
    with pytest.raises(DataError, match="multi-page"):
        open_large(tmp_path / "stack.tif")
    with pytest.raises(DataError, match="has 2 channels; the model expects 3"):
        open_large(tmp_path / "two.tif", channels=3)


def test_pyramidal_ome_tiff_reads_level_0_with_its_pixel_size(tmp_path: Path) -> None:
    image = _pattern(256, 192)
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", bigtiff=True) as tif:
        common = {"tile": (64, 64), "compression": "zlib", "photometric": "rgb"}
        tif.write(image, subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 250,
                                              "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.3,
                                              "PhysicalSizeYUnit": "µm"}, **common)
        tif.write(image[::2, ::2], subfiletype=1, **common)
        tif.write(image[::4, ::4], subfiletype=1, **common)
    with open_large(tmp_path / "p.ome.tif") as large:
        assert large.shape == (256, 192) and large.levels == [(256, 192), (128, 96), (64, 48)]
        assert large.pixel_size == PixelSize(0.25, 0.3, "OME metadata")
        np.testing.assert_array_equal(large.read_region(10, 20, 30, 40),
                                      image[10:20, 30:40] / np.float32(255))
        np.testing.assert_array_equal(large.read_region(0, 5, 0, 5, level=2),
                                      image[:20:4, :20:4] / np.float32(255))
        small = large.overview(max_pixels=64 * 48)  # the coarsest level holds that many
        np.testing.assert_array_equal(small, image[::4, ::4] / np.float32(255))
        np.testing.assert_array_equal(large[100:110, 5:9], large.read_region(100, 110, 5, 9))
        np.testing.assert_array_equal(large[250:, 190:, :], large.read_region(250, 256, 190, 192))


def test_pixel_sizes_from_imagej_resolution_tags_png_and_none(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((32, 32), np.uint16), imagej=True,
                     resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "micron"})
    assert read_pixel_size(tmp_path / "ij.tif") == PixelSize(0.5, 0.5, "ImageJ metadata")
    tifffile.imwrite(tmp_path / "cm.tif", np.zeros((32, 32), np.uint8),
                     resolution=(4000, 2000), resolutionunit="CENTIMETER")
    found = read_pixel_size(tmp_path / "cm.tif")
    assert found is not None and (found.x, found.y) == pytest.approx((2.5, 5.0))
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((32, 32), np.uint8))
    assert read_pixel_size(tmp_path / "none.tif") is None
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "p.png", dpi=(25_400 / 0.5,
                                                                               25_400 / 0.5))
    found = read_pixel_size(tmp_path / "p.png")
    assert found is not None and found.x == pytest.approx(0.5, rel=1e-5)
    assert pixel_size(1, 1, "pixel", "x") is None and pixel_size(0, 1, "µm", "x") is None
    assert str(PixelSize(0.25, 0.25, "OME metadata")) == "0.25 µm per pixel (OME metadata)"


def test_a_region_of_a_tiled_tiff_decodes_only_its_tiles(tmp_path: Path) -> None:
    # 2000 x 2000 RGB: 12 MB stored, 48 MB as float32; a 256 x 256 region touches 4 tiles
    tifffile.imwrite(tmp_path / "big.tif", _pattern(2000, 2000), tile=(256, 256),
                     compression="zlib", compressionargs={"level": 1}, photometric="rgb")
    with open_large(tmp_path / "big.tif") as image:
        tracemalloc.start()
        try:
            part = image.read_region(900, 1156, 1200, 1456)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert part.shape == (256, 256, 3)
    # 4 tiles of 196 kB decoded, the region as float32 (786 kB) and its conversions: well
    # under 1/4 of the 12 MB of pixels the whole image would take before conversion
    assert peak < 3_000_000, f"peak {peak:,} bytes"


def test_striped_tiff_region_reads_only_its_strips(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", _pattern(2000, 1000), compression="zlib",
                     compressionargs={"level": 1}, rowsperstrip=16, photometric="rgb")
    with open_large(tmp_path / "s.tif") as image:
        assert image.chunk == (16, 1000)
        tracemalloc.start()
        try:
            image.read_region(1000, 1064, 0, 100)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 1_500_000, f"peak {peak:,} bytes"  # 4 strips of 48 kB; whole: 6 MB


def _ngff(tmp_path: Path, data: np.ndarray, axes: list[dict], scale: list[float],
          version: str = "0.4") -> Path:
    path = tmp_path / f"img{version}.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    root.create_array("0", data=data, chunks=(1,) * (data.ndim - 2) + (32, 32))
    multiscale = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": scale}]}]}
    if version == "0.4":
        root.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_level_0_with_axes_and_pixel_size(tmp_path: Path, version: str) -> None:
    data = np.moveaxis(_pattern(100, 90, 2, np.uint16), -1, 0)[None, :, None]  # t c z y x
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    path = _ngff(tmp_path, data, axes, [1, 1, 2.0, 0.5, 400.0], version)
    with open_large(path) as image:
        assert (image.shape, image.channels, image.axes) == ((100, 90), 2, "TCZYX")
        assert (image.pixel_size.x, image.pixel_size.y) == pytest.approx((0.4, 0.5))
        np.testing.assert_allclose(image.read_region(3, 50, 7, 60),
                                   np.moveaxis(data[0, :, 0, 3:50, 7:60], 0, -1) / 65535,
                                   rtol=1e-6)
    whole = read_image(path)  # read whole too, with the same values
    np.testing.assert_allclose(whole, np.moveaxis(data[0, :, 0], 0, -1) / 65535, rtol=1e-6)
    stack = np.zeros((4, 64, 64), np.uint8)
    path = _ngff(tmp_path / "..", stack, axes[2:], [1.0, 1.0, 1.0], version)
    with pytest.raises(DataError, match="is an OME-Zarr a z-stack"):
        open_large(path)


def test_bioformats2raw_layout_opens_its_first_image(tmp_path: Path) -> None:
    data = _pattern(40, 50, 1, np.uint8)
    inner = _ngff(tmp_path, data, [{"name": "y", "type": "space"},
                                   {"name": "x", "type": "space"}], [1.0, 1.0])
    outer = tmp_path / "b2r.zarr"
    zarr.open_group(outer, mode="w", zarr_format=2).attrs["bioformats2raw.layout"] = 3
    inner.rename(outer / "0")
    with open_large(outer) as image:
        assert image.shape == (40, 50) and image.pixel_size is None  # no unit: none said
        np.testing.assert_array_equal(image.read_region(0, 40, 0, 50)[..., 0],
                                      data / np.float32(255))


def test_npy_is_memory_mapped_and_other_formats_read_whole(tmp_path: Path) -> None:
    chw = np.moveaxis(_pattern(60, 70), -1, 0)
    np.save(tmp_path / "x.npy", chw)
    with open_large(tmp_path / "x.npy") as image:
        assert image.reader == "memmap" and image.axes == "CYX"
    _same_as_read_image(tmp_path / "x.npy", (0, 60, 3, 70))
    Image.fromarray(_pattern(60, 70, 4)).save(tmp_path / "x.png")
    with open_large(tmp_path / "x.png") as image:
        assert image.reader == "whole" and image.channels == 3  # the alpha dropped
    _same_as_read_image(tmp_path / "x.png", (0, 60, 3, 70))
    _same_as_read_image(tmp_path / "x.png", (10, 20, 3, 70), channels=1)
    with open_large(tmp_path / "x.png") as image, pytest.raises(ValueError, match="outside"):
        image.read_region(0, 61, 0, 10)
