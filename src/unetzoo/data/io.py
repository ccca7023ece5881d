"""Read images and masks of the formats people have into numpy arrays, with clear errors.

Images come back as float32 `H x W x C` in [0, 1] (8-bit / 255, 16-bit / 65535, float data
as stored), with EXIF orientation applied, palettes expanded to RGB and alpha dropped. Masks
come back as integer `H x W` arrays (palette PNGs give their indices) or `H x W x 3` for colour
masks, with their stored values. Every reader also takes the file's bytes (`data`), so
converters read archive members without extracting them; `path` then names them in errors.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"})
LOSSY_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg"})
TIFF_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff"})

Image.MAX_IMAGE_PIXELS = None  # whole-slide and large EM images are legitimate input


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def check_file(path: Path, data: bytes | None = None) -> None:
    """Raise naming `path` unless it is a non-empty regular file of a supported type."""
    if data is None:
        try:
            info = os.stat(path)
        except FileNotFoundError as exc:
            raise DataError("file not found", path) from exc
        except OSError as exc:  # symlink loops, permissions
            raise DataError(f"cannot read ({exc.strerror or exc})", path) from exc
        if not stat.S_ISREG(info.st_mode):
            raise DataError("not a regular file", path)
        size = info.st_size
    else:
        size = len(data)
    if size == 0:
        raise DataError("file is empty (0 bytes)", path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"unsupported extension {path.suffix!r}; supported: "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}", path)


def _source(path: Path, data: bytes | None):
    return path if data is None else io.BytesIO(data)


def _read_tiff(path: Path, data: bytes | None = None) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(_source(path, data)) as tif:
            if len(tif.pages) > 1:
                raise DataError(f"is a multi-page TIFF ({len(tif.pages)} pages); "
                                "save one 2D image per file", path)
            array = tif.pages[0].asarray()
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise DataError(f"cannot read TIFF: {exc}", path) from exc
    if array.ndim == 3 and array.shape[0] <= 4 < min(array.shape[1:]):
        array = np.moveaxis(array, 0, -1)  # planar C x H x W
    return array


def _read_pil(path: Path, data: bytes | None = None, palette: bool = True) -> np.ndarray:
    """Pixels as stored; palette images give their indices when `palette`, else RGB(A)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(_source(path, data)) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    img = img.convert("RGB")
                elif img.mode == "1":
                    img = img.convert("L")
                elif img.mode in ("P", "PA") and not palette:
                    img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA"
                                      else "RGB")
                return np.asarray(img).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image ({exc})", path) from exc


def read_array(path: Path, data: bytes | None = None, palette: bool = True) -> np.ndarray:
    """The stored pixel array of an image file (or of its bytes `data`), `H x W` or
    `H x W x C`, in its own dtype; palette images give indices unless `palette=False`."""
    path = Path(path)
    check_file(path, data)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        array = _read_tiff(path, data)
    else:
        array = _read_pil(path, data, palette)
    if array.ndim not in (2, 3) or array.size == 0:
        raise DataError(f"expected a 2D image, got an array of shape {array.shape}", path)
    return array


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """Scale integer pixels by their dtype's maximum into [0, 1]; float data is kept."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    return array.astype(np.float32)


def image_channels(array: np.ndarray) -> int:
    """Colour channels of an image array once alpha is dropped (1 or 3)."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    return {1: 1, 2: 1, 3: 3, 4: 3}.get(channels, channels)


def read_image(path: Path, channels: int | None = None, data: bytes | None = None
               ) -> np.ndarray:
    """An image as float32 `H x W x C` in [0, 1], alpha dropped, converted to `channels`.

    Gray is replicated to 3 channels when `channels == 3`; colour is converted to
    luminance when `channels == 1`.
    """
    path = Path(path)
    array = read_array(path, data, palette=False)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[2] in (2, 4):  # LA / RGBA: drop alpha
        array = array[..., :-1]
    image = to_unit_float(array)
    if channels is None or channels == image.shape[2]:
        return np.ascontiguousarray(image)
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 1 and image.shape[2] == 3:
        return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    raise DataError(f"has {image.shape[2]} channels; the model expects {channels}", path)


def read_mask(path: Path, data: bytes | None = None, rgb: bool = False) -> np.ndarray:
    """A mask's stored values: `H x W` integers, or `H x W x 3` for colour masks.

    Palette PNGs give their palette indices; gray stored as RGB(A) gives one channel. With
    `rgb` (colour class maps), every mask comes back `H x W x 3`: palettes give their
    colours and gray value v gives (v, v, v).
    """
    path = Path(path)
    array = read_array(path, data, palette=not rgb)
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[..., :-1]
    if rgb:
        return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else \
            np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    if array.ndim == 3 and (array.shape[2] == 1 or (array == array[..., :1]).all()):
        array = array[..., 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError("mask holds non-integer values; masks must hold class indices "
                            "or 0/255 (0/1)", path)
        array = array.astype(np.int64)
    return array


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding the pixels."""

    height: int
    width: int
    channels: int  # colour channels once alpha is dropped and palettes expanded (1 or 3)
    bits: int  # bits per sample: 1, 8, 16, 32
    mode: str  # e.g. L, RGB, RGBA, P, I;16 or, for TIFF, the numpy dtype and samples

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


_PIL_BITS = {"1": 1, "I": 32, "F": 32}
_PIL_CHANNELS = {"RGB": 3, "RGBA": 3, "RGBX": 3, "CMYK": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
                 "P": 3, "PA": 3}


def read_header(path: Path, data: bytes | None = None) -> ImageHeader:
    """(height, width, channels, bit depth) from the file header (or the start of its bytes
    `data`), EXIF rotation applied."""
    path = Path(path)
    check_file(path, data)
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            import tifffile

            with tifffile.TiffFile(_source(path, data)) as tif:
                page = tif.pages[0]
                samples = page.samplesperpixel
                shape = page.shape if page.planarconfig != 2 or samples == 1 else \
                    (*page.shape[1:], samples)
                return ImageHeader(shape[0], shape[1], 3 if samples >= 3 else 1,
                                   page.bitspersample, f"{page.dtype}x{samples}")
        with Image.open(_source(path, data)) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "MPO") else 1
            mode = img.mode
    except DataError:
        raise
    except Exception as exc:  # PIL and tifffile raise many types for broken headers
        raise DataError(f"cannot read image ({exc})", path) from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    bits = 16 if mode.startswith("I;16") else _PIL_BITS.get(mode, 8)
    return ImageHeader(height, width, _PIL_CHANNELS.get(mode, 1), bits, mode)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) read from the file header when possible, without decoding pixels."""
    return read_header(path).size
