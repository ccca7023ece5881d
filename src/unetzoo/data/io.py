"""Read images and masks of the formats people have into numpy arrays, with clear errors.

Images come back as float32 `H x W x C` in [0, 1] (8-bit / 255, 16-bit / 65535, float data
as stored), with EXIF orientation applied and alpha dropped. Masks come back as integer
`H x W` arrays (or `H x W x 3` for colour masks) with their stored values.
"""

from __future__ import annotations

import warnings
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


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", path)
    if path.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"unsupported extension {path.suffix!r}; supported: "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}", path)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
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


def _read_pil(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    img = img.convert("RGB")
                elif img.mode == "1":
                    img = img.convert("L")
                return np.asarray(img).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image ({exc})", path) from exc


def read_array(path: Path) -> np.ndarray:
    """The stored pixel array of an image file, `H x W` or `H x W x C`, in its own dtype."""
    path = Path(path)
    _check_file(path)
    array = _read_tiff(path) if path.suffix.lower() in TIFF_EXTENSIONS else _read_pil(path)
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


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """An image as float32 `H x W x C` in [0, 1], alpha dropped, converted to `channels`.

    Gray is replicated to 3 channels when `channels == 3`; colour is converted to
    luminance when `channels == 1`.
    """
    path = Path(path)
    array = read_array(path)
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


def read_mask(path: Path) -> np.ndarray:
    """A mask's stored values: `H x W` integers, or `H x W x 3` for colour masks.

    Palette PNGs give their palette indices; gray stored as RGB(A) gives one channel.
    """
    path = Path(path)
    array = read_array(path)
    if array.ndim == 3:
        if array.shape[2] in (2, 4):
            array = array[..., :-1]
        if array.shape[2] == 1 or (array == array[..., :1]).all():
            array = array[..., 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError("mask holds non-integer values; masks must hold class indices "
                            "or 0/255 (0/1)", path)
        array = array.astype(np.int64)
    return array


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) read from the file header when possible, without decoding pixels."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return tuple(read_array(path).shape[:2])  # type: ignore[return-value]
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image ({exc})", path) from exc
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)
