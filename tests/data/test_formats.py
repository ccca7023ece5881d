"""Every format Pillow, tifffile and imagecodecs read, with the value rules of `read_image`;
compressed TIFFs; `.npy` layouts; folder listings that say what they skip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetzoo.data.io import (
    classify_path,
    describe_skipped,
    image_stem,
    list_images,
    npy_axes,
    read_header,
    read_image,
    read_mask,
)
from unetzoo.errors import DataError

RGB = (np.arange(40 * 50 * 3) % 251).astype(np.uint8).reshape(40, 50, 3)
DEEP = (np.arange(40 * 50) * 31 % 65536).astype(np.uint16).reshape(40, 50)


def test_webp_lossless_rgba_drops_the_alpha(tmp_path: Path) -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "x.webp", lossless=True)
    image = read_image(tmp_path / "x.webp")
    assert image.shape == (40, 50, 3)
    np.testing.assert_array_equal(image, RGB / np.float32(255))
    assert read_header(tmp_path / "x.webp").kind == "RGBA"


def test_jpeg2000_8_and_16_bit(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "x.jp2")  # lossless by default
    np.testing.assert_array_equal(read_image(tmp_path / "x.jp2"), RGB / np.float32(255))
    Image.fromarray(DEEP).save(tmp_path / "g.j2k")
    image = read_image(tmp_path / "g.j2k")
    assert image.shape == (40, 50, 1)
    np.testing.assert_allclose(image[..., 0], DEEP / 65535, rtol=1e-6)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.j2k"), DEEP)


def test_avif_and_qoi(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "x.avif")
    assert read_image(tmp_path / "x.avif").shape == (40, 50, 3)
    Image.fromarray(RGB).save(tmp_path / "x.qoi")
    np.testing.assert_array_equal(read_image(tmp_path / "x.qoi"), RGB / np.float32(255))


def test_16_bit_pgm_scales_by_65535(tmp_path: Path) -> None:
    Image.fromarray(DEEP).save(tmp_path / "g.pgm")  # Pillow decodes it as 32-bit mode I
    np.testing.assert_allclose(read_image(tmp_path / "g.pgm")[..., 0], DEEP / 65535, rtol=1e-6)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.pgm"), DEEP)
    assert read_header(tmp_path / "g.pgm").bits == 16


def test_jpeg_xl_through_imagecodecs(tmp_path: Path) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 200, np.uint8)])
    (tmp_path / "x.jxl").write_bytes(imagecodecs.jpegxl_encode(rgba, lossless=True))
    np.testing.assert_array_equal(read_image(tmp_path / "x.jxl"), RGB / np.float32(255))
    (tmp_path / "g.jxl").write_bytes(imagecodecs.jpegxl_encode(DEEP, lossless=True))
    np.testing.assert_allclose(read_image(tmp_path / "g.jxl")[..., 0], DEEP / 65535, rtol=1e-6)
    header = read_header(tmp_path / "x.jxl")
    assert (header.height, header.width, header.channels, header.kind) == (40, 50, 3, "RGBA")


@pytest.mark.parametrize("compression", ["lzw", "zstd", "deflate", "lzma", "packbits"])
def test_compressed_tiffs_read_exactly(tmp_path: Path, compression: str) -> None:
    tifffile.imwrite(tmp_path / "c.tif", DEEP, compression=compression, tile=(16, 16))
    np.testing.assert_allclose(read_image(tmp_path / "c.tif")[..., 0], DEEP / 65535, rtol=1e-6)
    tifffile.imwrite(tmp_path / "rgb.tif", RGB, compression=compression)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), RGB / np.float32(255))


def test_jpeg_in_tiff_reads_close(tmp_path: Path) -> None:
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None], 64, 0)
    rgb = np.dstack([smooth, smooth.T, np.full_like(smooth, 128)])
    tifffile.imwrite(tmp_path / "j.tif", rgb, compression="jpeg", photometric="rgb")
    image = read_image(tmp_path / "j.tif")
    assert image.shape == (64, 64, 3)
    assert np.abs(image - rgb / 255).max() < 0.05


def test_a_missing_codec_is_named_with_its_fix(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tifffile.imwrite(tmp_path / "c.tif", DEEP, compression="lzw")
    tifffile.imwrite(tmp_path / "z.tif", DEEP, compression="zlib")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import imagecodecs fails
    with pytest.raises(DataError) as caught:
        read_image(tmp_path / "c.tif")
    message = str(caught.value)
    assert "\n" not in message and "No module named" not in message
    assert "c.tif: is compressed with LZW" in message and "pip install imagecodecs" in message
    assert read_image(tmp_path / "z.tif").shape == (40, 50, 1)  # zlib needs no imagecodecs
    (tmp_path / "x.jxl").write_bytes(b"\xff\x0a" + bytes(10))
    with pytest.raises(DataError, match=r"x\.jxl: is a JPEG XL image, which needs the "
                                        r"imagecodecs package"):
        read_image(tmp_path / "x.jxl")
    assert classify_path(tmp_path / "x.jxl").kind == "codec"


def test_ome_tiff_channels_are_kept(tmp_path: Path) -> None:
    data = np.stack([DEEP, DEEP // 2])
    tifffile.imwrite(tmp_path / "s.ome.tif", data, metadata={"axes": "CYX"},
                     compression="zlib", tile=(16, 16))
    image = read_image(tmp_path / "s.ome.tif")
    assert image.shape == (40, 50, 2)
    np.testing.assert_allclose(image[..., 1], (DEEP // 2) / 65535, rtol=1e-6)
    assert image_stem(tmp_path / "s.ome.tif") == "s"


def test_npy_layouts_and_values(tmp_path: Path) -> None:
    np.save(tmp_path / "g.npy", DEEP)
    np.testing.assert_allclose(read_image(tmp_path / "g.npy")[..., 0], DEEP / 65535, rtol=1e-6)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.npy"), DEEP)
    chw = np.moveaxis(RGB, -1, 0)
    np.save(tmp_path / "chw.npy", chw)
    np.testing.assert_array_equal(read_image(tmp_path / "chw.npy"), RGB / np.float32(255))
    np.save(tmp_path / "batch.npy", chw[None])  # 1 x C x H x W, as BioImage.IO tensors
    assert read_image(tmp_path / "batch.npy").shape == (40, 50, 3)
    floats = np.linspace(-1, 2, 40 * 50 * 2, dtype=np.float32).reshape(40, 50, 2)
    np.save(tmp_path / "f.npy", floats)
    np.testing.assert_array_equal(read_image(tmp_path / "f.npy"), floats)  # as stored
    header = read_header(tmp_path / "chw.npy")
    assert (header.height, header.width, header.channels, header.mode) == (40, 50, 3,
                                                                          "uint8 CYX")
    assert npy_axes((3, 4, 4), tmp_path) == "YXC"  # both short: channels last
    np.save(tmp_path / "stack.npy", np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"stack.npy: is a .npy array of shape \(10, 32, 32\)"):
        read_image(tmp_path / "stack.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"obj\.npy: cannot read \.npy array"):
        read_image(tmp_path / "obj.npy")


def test_animated_gif_is_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(RGB[..., i]) for i in range(2)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"a\.gif: is an animated or multi-frame GIF image of 2"):
        read_image(tmp_path / "a.gif")


def test_listing_says_what_it_skips_and_why(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", DEEP)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "todo.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    Image.fromarray(RGB).save(tmp_path / "sub" / "c.png")
    (tmp_path / "plate.ome.zarr").mkdir()
    (tmp_path / "plate.ome.zarr" / ".zattrs").write_text('{"multiscales": []}')
    (tmp_path / "plain.zarr").mkdir()
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    images, skipped = list_images(tmp_path)
    assert [p.name for p in images] == ["a.png", "b.npy", "plate.ome.zarr"]
    kinds = {e.path.name: (e.kind, e.reason) for e in skipped}
    assert kinds["notes.txt"] == ("format", "not an image format unetzoo reads (.txt)")
    assert kinds[".hidden.png"] == ("hidden", "hidden file")
    assert kinds["sub"] == ("folder", "a folder (pass --recursive)")
    assert kinds["empty.tif"] == ("empty", "empty file (0 bytes)")
    assert kinds["link.png"][0] == "link" and kinds["Thumbs.db"][0] == "system"
    assert kinds["plain.zarr"][0] == "format"
    lines = describe_skipped(skipped, tmp_path)
    assert ("skipped 3 entries: not an image format unetzoo reads (.txt); a Zarr folder without "
            "OME-NGFF multiscales metadata (not an image unetzoo reads): notes.txt, plain.zarr, "
            "todo.txt") in lines
    assert "skipped 1 entry: a folder (pass --recursive): sub" in lines
    images, skipped = list_images(tmp_path, recursive=True)
    assert tmp_path / "sub" / "c.png" in images and "sub" not in {e.path.name for e in skipped}
    assert classify_path(tmp_path / "a.png").readable
