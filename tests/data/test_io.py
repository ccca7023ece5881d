"""Reading the image and mask formats people have."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetzoo.data.io import image_size, read_image, read_mask
from unetzoo.errors import DataError


def test_8bit_gray_and_rgb(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (3, 4, 1) and image.dtype == np.float32
    assert image[0, 1, 0] == pytest.approx(20 / 255)
    assert read_image(tmp_path / "g.png", channels=3).shape == (3, 4, 3)


def test_rgba_drops_alpha_and_16bit_png_scales(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (2, 2, 3) and image[0, 0, 0] == 1.0
    deep = np.full((2, 3), 65535, np.uint16)
    deep[0, 0] = 0
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png")[..., 0].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_16bit_tiff_and_planar_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", np.full((5, 6), 32768, np.uint16))
    assert read_image(tmp_path / "t.tif")[0, 0, 0] == pytest.approx(32768 / 65535)
    tifffile.imwrite(tmp_path / "p.tiff", np.zeros((3, 8, 9), np.uint8), photometric="rgb",
                     planarconfig="separate")
    assert read_image(tmp_path / "p.tiff").shape == (8, 9, 3)


def test_multipage_tiff_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((4, 8, 8), np.uint8),
                     photometric="minisblack")
    with pytest.raises(DataError, match="multi-page"):
        read_image(tmp_path / "stack.tif")


def test_tiff_pages_appended_as_series_are_refused_not_dropped(tmp_path: Path) -> None:
    # Two pages written one by one form two series; reading the first alone dropped the
    # second channel without a word.
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((8, 9), np.uint8))
    tifffile.imwrite(tmp_path / "two.tif", np.full((8, 9), 7, np.uint8), append=True)
    with pytest.raises(DataError, match=r"two.tif: is a multi-page TIFF \(2 images of 9x8"):
        read_image(tmp_path / "two.tif")
    with pytest.raises(DataError, match="multi-page"):
        image_size(tmp_path / "two.tif")
    # A smaller second series (a thumbnail) is not a channel: the image reads as one.
    tifffile.imwrite(tmp_path / "thumb.tif", np.full((8, 9), 3, np.uint8))
    tifffile.imwrite(tmp_path / "thumb.tif", np.zeros((2, 2), np.uint8), append=True)
    assert read_image(tmp_path / "thumb.tif").shape == (8, 9, 1)


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (20, 10, 3)
    assert image_size(tmp_path / "r.jpg") == (20, 10)


def test_palette_mask_gives_indices_and_rgb_gray_mask_one_channel(tmp_path: Path) -> None:
    index = np.array([[0, 1], [2, 1]], np.uint8)
    pal = Image.fromarray(index, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == index.tolist()
    Image.fromarray(np.stack([index * 100] * 3, -1)).save(tmp_path / "rgb.png")
    assert read_mask(tmp_path / "rgb.png").shape == (2, 2)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not a png at all", "cannot read")])
def test_broken_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape("t.png")):
        read_image(tmp_path / "t.png")


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_bytes(b"RIFF")
    with pytest.raises(DataError, match=r"x.txt: not an image format unetzoo reads \(.txt\)"):
        read_image(tmp_path / "x.txt")
    (tmp_path / "x.webp").write_bytes(b"RIFF")  # a format read, broken: said so
    with pytest.raises(DataError, match=r"x\.webp: cannot read image"):
        read_image(tmp_path / "x.webp")


def test_palette_image_reads_as_colour_and_rgba_mask_drops_alpha(tmp_path: Path) -> None:
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.save(tmp_path / "p.png")
    assert (read_image(tmp_path / "p.png") * 255).round().astype(int)[0].tolist() == [
        [10, 20, 30], [200, 100, 50]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[255, 0], [0, 0]]


def test_a_palette_transparency_is_said_as_the_alpha_it_becomes(tmp_path: Path) -> None:
    from unetzoo.data.dataset import channel_evidence
    from unetzoo.data.io import read_header

    image = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), "P")
    image.putpalette([v for k in range(4) for v in (60 * k, 60 * k, 60 * k)])
    image.save(tmp_path / "plain.png")
    image.save(tmp_path / "clear.png", transparency=0)  # tRNS: read as RGBA, alpha dropped
    assert read_image(tmp_path / "clear.png")[1, 0].tolist() == pytest.approx([120 / 255] * 3)
    headers = [read_header(tmp_path / name) for name in ("plain.png", "clear.png")]
    assert [h.kind for h in headers] == ["RGB", "RGBA"]
    assert channel_evidence(headers, 3) == (
        "1 RGB, 1 RGBA; 1 with a declared alpha channel: the alpha is dropped (transparency, "
        "not an input channel; to keep it, save it as a TIFF sample not declared alpha)")


def test_headers_give_size_channels_and_bit_depth(tmp_path: Path) -> None:
    from unetzoo.data.io import read_header

    tifffile.imwrite(tmp_path / "t.tif", np.zeros((5, 6), np.uint16))
    Image.fromarray(np.zeros((3, 4, 4), np.uint8)).save(tmp_path / "a.png")
    def facts(path: Path) -> tuple[int, int, int, int]:
        header = read_header(path)
        return header.height, header.width, header.channels, header.bits

    assert facts(tmp_path / "t.tif") == (5, 6, 1, 16)
    assert facts(tmp_path / "a.png") == (3, 4, 3, 8)
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(DataError, match=re.escape("z.png: file is empty")):
        read_header(tmp_path / "z.png")
