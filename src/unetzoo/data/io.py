"""Read images and masks of the formats people have into numpy arrays, with clear errors.

Images come back as float32 `H x W x C` in [0, 1] (8-bit / 255, 16-bit / 65535, float data
as stored), with EXIF orientation applied, palettes expanded to RGB and a *declared* alpha
channel dropped (PNG LA / RGBA / PA, TIFF ExtraSamples = alpha). No other channel is ever
dropped: a two-channel TIFF is two channels, a four-sample TIFF without alpha four. TIFF
channels may be contiguous (`H x W x C`), planar (`C x H x W`) or one page per channel in an
ImageJ / OME hyperstack (axes `CYX`); a z-stack or time series is refused.

Masks come back with their stored values: integer `H x W` arrays (palette PNGs give their
indices), float `H x W` for float masks that are not whole numbers (probability maps), or
`H x W x 3` for colour masks. A mask with an alpha channel is read as meant: when only the
alpha varies, the alpha is the mask; otherwise fully transparent pixels are background.
`data.masks` decides what the stored values mean.

Every reader also takes the file's bytes (`data`), so converters read archive members
without extracting them; `path` then names them in errors.

Images of more than `max_image_pixels()` pixels (Pillow's decompression-bomb limit, 89.5
million, by default) are refused with a clear error; the environment variable
`UNETZOO_MAX_IMAGE_PIXELS` raises the limit (0: none). Importing this module changes no
global state.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"})
LOSSY_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg"})
TIFF_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff"})

MAX_PIXELS_VARIABLE = "UNETZOO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default: 1024 * 1024 * 1024 // 4 // 3
_PIL_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_PILLOW_LIMIT = threading.Lock()
# TIFF ExtraSamples values that declare an alpha channel (1 associated, 2 unassociated).
_TIFF_ALPHA = frozenset({1, 2})
# Multi-page TIFF axes (besides Y, X and samples S) that are channels.
_CHANNEL_AXES = frozenset({"C"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_lossy(path: Path) -> bool:
    """Whether the file's format compresses with loss (JPEG): stored values carry noise."""
    return Path(path).suffix.lower() in LOSSY_EXTENSIONS


def max_image_pixels() -> int | None:
    """The largest image (in pixels) read: `UNETZOO_MAX_IMAGE_PIXELS` when set (0: no
    limit), else Pillow's default decompression-bomb limit.

    Raises:
        ConfigError: the variable is not a whole number >= 0.
    """
    value = os.environ.get(MAX_PIXELS_VARIABLE)
    if value is None or not value.strip():
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        limit = -1
    if limit < 0:
        raise ConfigError(f"{MAX_PIXELS_VARIABLE}={value!r} must be a whole number of pixels "
                          ">= 0 (0: no limit)")
    return limit or None


def check_pixels(height: int, width: int, path: Path) -> None:
    """Raise naming `path` when an image is larger than `max_image_pixels()`."""
    limit = max_image_pixels()
    if limit is not None and height * width > limit:
        raise DataError(f"is {width}x{height} ({height * width:,} pixels), more than the "
                        f"{limit:,} read by default (a guard against decompression bombs); "
                        f"set {MAX_PIXELS_VARIABLE}=0 (no limit) or a larger number to read it",
                        path)


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


@dataclass(frozen=True)
class Pixels:
    """A file's pixels as stored: `H x W` or `H x W x C` in the file's dtype, and whether
    the last channel is a declared alpha channel."""

    array: np.ndarray
    alpha: bool = False


@dataclass(frozen=True)
class _TiffLayout:
    """The first series of a TIFF: its axes and their sizes, its first page, the channels
    `read_image` gives and whether the last sample is a declared alpha channel."""

    series: Any
    page: Any
    axes: str
    shape: dict[str, int]
    channels: int
    alpha: bool


def _tiff_layout(tif, path: Path) -> _TiffLayout:
    """The layout of an open TiffFile, refusing pages that are not channels (z-stacks, time
    series, unlabelled pages) with an error naming `path`."""
    series = tif.series[0]
    axes = series.axes
    shape = dict(zip(axes, series.shape, strict=True))
    # Pages appended one by one (tifffile's `append=True`, some microscope writers) make one
    # series each: more images of the first one's size are channels or slices, never to be
    # dropped. Other sizes (a thumbnail, a slide label) are not pixels of this image.
    alike = [s for s in tif.series[1:] if s.shape[-2:] == series.shape[-2:]]
    if alike:
        raise DataError(f"is a multi-page TIFF ({1 + len(alike)} images of "
                        f"{shape['X']}x{shape['Y']} stored as separate series): they do not say "
                        "whether they are channels or z-slices; save one 2D image per file "
                        "(channels as H x W x C, or an ImageJ hyperstack with axes CYX)", path)
    extra = set(axes) - {"Y", "X", "S"}
    page = series.pages[0] if series.pages else tif.pages[0]
    if extra and extra != _CHANNEL_AXES:
        pages = int(np.prod([shape[a] for a in extra]))
        if pages > 1:
            what = ("a z-stack or time series" if extra & {"Z", "T"} else
                    "pages that do not say whether they are channels or z-slices")
            raise DataError(f"is a multi-page TIFF ({pages} pages, axes {axes}): {what}; save "
                            "one 2D image per file (channels as H x W x C, or an ImageJ "
                            "hyperstack with axes CYX)", path)
    samples = page.samplesperpixel if "S" in axes else 1
    alpha = bool(samples > 1 and set(int(e) for e in page.extrasamples or ()) & _TIFF_ALPHA)
    if int(page.photometric) == 3:  # palette: expanded to RGB for images
        samples = 3
    return _TiffLayout(series, page, axes, shape, shape.get("C", 1) * samples - alpha, alpha)


def _read_tiff(path: Path, data: bytes | None = None, palette: bool = True) -> Pixels:
    import tifffile

    try:
        with tifffile.TiffFile(_source(path, data)) as tif:
            layout = _tiff_layout(tif, path)
            check_pixels(layout.shape["Y"], layout.shape["X"], path)
            array = layout.series.asarray()
            page = layout.page
            colormap = page.colormap if int(page.photometric) == 3 else None
            axes, alpha = layout.axes, layout.alpha
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise DataError(f"cannot read TIFF: {exc}", path) from exc
    keep = [a for a in axes if a in ("C", "S", "Y", "X")]
    array = array.reshape([n for a, n in zip(axes, array.shape, strict=True) if a in keep]
                          or array.shape)
    order = [keep.index(a) for a in ("Y", "X", "C", "S") if a in keep]
    array = np.transpose(array, order)
    if array.ndim == 4:  # channels x samples
        array = array.reshape(*array.shape[:2], -1)
    if colormap is not None and not palette:
        array = np.moveaxis(np.asarray(colormap)[:, array], 0, -1)
    return Pixels(array, alpha)


@contextmanager
def _pillow_without_limit() -> Iterator[None]:
    """Lift Pillow's own decompression-bomb check for one read (our `check_pixels` decides);
    only used when the user raised the limit, and restored at once."""
    with _PILLOW_LIMIT:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _decode_pil(path: Path, data: bytes | None, palette: bool) -> Pixels:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(_source(path, data)) as img:
            check_pixels(img.size[1], img.size[0], path)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif img.mode == "1":
                img = img.convert("L")
            elif img.mode == "RGBX":
                img = img.convert("RGB")
            elif img.mode in ("P", "PA") and not palette:
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA"
                                  else "RGB")
            return Pixels(np.asarray(img).copy(), img.mode in _PIL_ALPHA_MODES)


def _read_pil(path: Path, data: bytes | None = None, palette: bool = True) -> Pixels:
    """Pixels as stored; palette images give their indices when `palette`, else RGB(A)."""
    try:
        try:
            return _decode_pil(path, data, palette)
        except Image.DecompressionBombError:
            if max_image_pixels() is not None and max_image_pixels() <= DEFAULT_MAX_PIXELS:
                raise
            with _pillow_without_limit():
                return _decode_pil(path, data, palette)
    except Image.DecompressionBombError as exc:
        raise DataError(f"is larger than {max_image_pixels():,} pixels (a guard against "
                        f"decompression bombs); set {MAX_PIXELS_VARIABLE}=0 (no limit) or a "
                        "larger number to read it", path) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image ({exc})", path) from exc


def read_pixels(path: Path, data: bytes | None = None, palette: bool = True) -> Pixels:
    """The stored pixels of an image file (or of its bytes `data`) and whether its last
    channel is a declared alpha channel; palette images give indices unless
    `palette=False`.

    Raises:
        DataError: naming `path`, for a missing, empty, unsupported, broken or too large
            file, or a TIFF whose pages are not channels.
    """
    path = Path(path)
    check_file(path, data)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        pixels = _read_tiff(path, data, palette)
    else:
        pixels = _read_pil(path, data, palette)
    if pixels.array.ndim not in (2, 3) or pixels.array.size == 0:
        raise DataError(f"expected a 2D image, got an array of shape {pixels.array.shape}", path)
    return pixels


def read_array(path: Path, data: bytes | None = None, palette: bool = True) -> np.ndarray:
    """The stored pixel array of an image file (or of its bytes `data`), `H x W` or
    `H x W x C`, in its own dtype, alpha included; palette images give indices unless
    `palette=False`."""
    return read_pixels(path, data, palette).array


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """Scale integer pixels by their dtype's maximum into [0, 1]; float data is kept."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    return array.astype(np.float32)


def read_image(path: Path, channels: int | None = None, data: bytes | None = None
               ) -> np.ndarray:
    """An image as float32 `H x W x C` in [0, 1], a declared alpha channel dropped, converted
    to `channels` when given.

    Gray is replicated to 3 channels when `channels == 3`; colour is converted to
    luminance when `channels == 1`; any other mismatch is an error.

    Raises:
        DataError: naming `path`, for unreadable files or a channel count that does not fit.
    """
    path = Path(path)
    pixels = read_pixels(path, data, palette=False)
    array = pixels.array if pixels.array.ndim == 3 else pixels.array[..., None]
    if pixels.alpha:
        array = array[..., :-1]
    image = to_unit_float(array)
    if channels is None or channels == image.shape[2]:
        return np.ascontiguousarray(image)
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 1 and image.shape[2] == 3:
        return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    raise DataError(f"has {image.shape[2]} channels; the model expects {channels}", path)


GRAY_TOLERANCE = 16  # JPEG chroma noise on gray content stays within a few levels


def _without_alpha(array: np.ndarray) -> np.ndarray:
    """A mask's values once its alpha channel is read as meant: the alpha itself when the
    colour is the same everywhere (the mask lives in the alpha), else the colour with fully
    transparent pixels as background (0)."""
    colour, alpha = array[..., :-1], array[..., -1]
    if (alpha == alpha.flat[0]).all():
        return colour
    if (colour == colour.reshape(-1, colour.shape[2])[0]).all():
        return alpha
    return np.where((alpha == 0)[..., None], 0, colour).astype(array.dtype)


def read_mask(path: Path, data: bytes | None = None, rgb: bool = False) -> np.ndarray:
    """A mask's stored values: `H x W` integers (or floats, for masks such as probability
    maps that are not whole numbers), or `H x W x 3` for colour masks.

    Palette PNGs give their palette indices; gray stored as RGB(A) gives one channel (JPEG
    colour noise on gray content included); an alpha channel is read as described in the
    module docstring. With `rgb` (colour class maps), every mask comes back `H x W x 3`:
    palettes give their colours and gray value v gives (v, v, v).

    Raises:
        DataError: naming `path`, for unreadable files, masks with two or more than four
            channels, and non-finite float values.
    """
    path = Path(path)
    pixels = read_pixels(path, data, palette=not rgb)
    array = pixels.array
    if array.ndim == 3 and pixels.alpha:
        array = _without_alpha(array)
    if array.ndim == 3 and array.shape[2] not in (1, 3):
        raise DataError(f"mask has {array.shape[2]} channels; masks are gray (index or "
                        "0/255), RGB colour, or gray with alpha", path)
    if rgb:
        return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else \
            np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    if array.ndim == 3:
        spread = array.max(axis=2).astype(np.int64) - array.min(axis=2)
        if array.shape[2] == 1 or not spread.any():
            array = array[..., 0]
        elif is_lossy(path) and spread.max() <= GRAY_TOLERANCE:
            array = np.rint(array.mean(axis=2)).astype(array.dtype)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)):
            raise DataError("mask holds NaN or infinite values", path)
        if np.all(array == np.round(array)):
            array = array.astype(np.int64)
    return array


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding the pixels."""

    height: int
    width: int
    channels: int  # channels `read_image` gives: declared alpha dropped, palettes expanded
    bits: int  # bits per sample: 1, 8, 16, 32
    mode: str  # e.g. L, RGB, RGBA, P, I;16 or, for TIFF, the numpy dtype and samples

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def kind(self) -> str:
        """A few words on the channels: gray, gray+alpha, RGB, RGBA or N channels."""
        if self.channels == 3:
            return "RGBA" if self.mode in ("RGBA", "RGBa", "PA") or "alpha" in self.mode \
                else "RGB"
        if self.channels == 1:
            return "gray+alpha" if self.mode in ("LA", "La") or "alpha" in self.mode else "gray"
        return f"{self.channels}-channel"


_PIL_BITS = {"1": 1, "I": 32, "F": 32}
_PIL_CHANNELS = {"RGB": 3, "RGBA": 3, "RGBX": 3, "RGBa": 3, "CMYK": 3, "YCbCr": 3, "LAB": 3,
                 "HSV": 3, "P": 3, "PA": 3}


def read_header(path: Path, data: bytes | None = None) -> ImageHeader:
    """(height, width, channels, bit depth) from the file header (or the start of its bytes
    `data`), EXIF rotation applied; the channels are those `read_image` gives.

    Raises:
        DataError: naming `path`, for unreadable headers or TIFF pages that are not channels.
    """
    path = Path(path)
    check_file(path, data)
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            import tifffile

            with tifffile.TiffFile(_source(path, data)) as tif:
                layout = _tiff_layout(tif, path)
                return ImageHeader(layout.shape["Y"], layout.shape["X"], layout.channels,
                                   layout.page.bitspersample, f"{layout.series.dtype} "
                                   f"{layout.axes}{' alpha' if layout.alpha else ''}")
        with Image.open(_source(path, data)) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "MPO") else 1
            mode = img.mode
            if mode == "P" and "transparency" in img.info:  # read as RGBA, alpha dropped
                mode = "PA"
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
