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

Formats: what Pillow reads (PNG, JPEG, BMP, GIF, WebP, JPEG 2000, AVIF, QOI, TGA, PNM, SGI,
PCX), every TIFF tifffile reads (BigTIFF, OME-TIFF, ImageJ, SVS, NDPI, LSM, ... with any
compression imagecodecs decodes: LZW, Deflate, Zstd, JPEG, LZMA, JPEG 2000, JPEG XL), JPEG XL
files through imagecodecs, numpy `.npy` arrays (`npy_axes` gives their layout) and OME-Zarr
folders (level 0, read whole here; `unetzoo.data.large` reads any of these by regions). The
same value rules hold for each; a multi-frame file (an animated GIF, a z-stack) is refused.
`classify_path` and `list_images` tell a folder's images from what is skipped, and why.

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

# Formats Pillow decodes (its plugins for still raster images; icons, PSD layers, PDF, EPS
# and the scientific stubs are left out). WebP, JPEG 2000 and AVIF need Pillow built with
# libwebp, OpenJPEG and libavif, as the PyPI wheels are.
PIL_EXTENSIONS: frozenset[str] = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp",
    ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx", ".avif", ".qoi", ".tga", ".ppm", ".pgm",
    ".pbm", ".pnm", ".pfm", ".sgi", ".pcx"})
# TIFF and the TIFF-based formats tifffile reads (OME-TIFF is `.ome.tif`, BigTIFF `.btf`,
# `.tf8`, `.tf2`; whole-slide `.svs`, `.ndpi`, `.scn`, `.qptiff`, `.bif`; Zeiss `.lsm`,
# MetaMorph `.stk`); compressed pixels are decoded by imagecodecs.
TIFF_EXTENSIONS: frozenset[str] = frozenset({
    ".tif", ".tiff", ".btf", ".tf8", ".tf2", ".ptif", ".ptiff", ".svs", ".ndpi", ".scn",
    ".qptiff", ".bif", ".lsm", ".stk"})
# Formats decoded by imagecodecs alone.
CODEC_EXTENSIONS: frozenset[str] = frozenset({".jxl"})
NPY_EXTENSIONS: frozenset[str] = frozenset({".npy"})
IMAGE_EXTENSIONS: frozenset[str] = PIL_EXTENSIONS | TIFF_EXTENSIONS | CODEC_EXTENSIONS | \
    NPY_EXTENSIONS
LOSSY_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".avif"})
FORMATS = ("PNG, JPEG, TIFF (OME-TIFF, BigTIFF, ImageJ, whole-slide), BMP, GIF, WebP, "
           "JPEG 2000, AVIF, JPEG XL, QOI, TGA, PNM, SGI, PCX and .npy arrays")
# Suffixes that belong to the format, not the name: `scan.ome.tif` is the image `scan`.
_DOUBLE_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.btf", ".ome.tf2", ".ome.tf8", ".ome.zarr")
# Files operating systems leave in folders.
SYSTEM_NAMES: frozenset[str] = frozenset({"thumbs.db", "desktop.ini", "__macosx", ".ds_store"})
# The largest channel axis of a `.npy` array (see `npy_axes`).
NPY_MAX_CHANNELS = 4

MAX_PIXELS_VARIABLE = "UNETZOO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default: 1024 * 1024 * 1024 // 4 // 3
_PIL_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
# Formats Pillow decodes to 32-bit mode "I" when their samples are 16-bit (PGM with a maxval
# over 255; PNG in older Pillow): read as uint16, never scaled by 2**31 - 1.
_PIL_16BIT_AS_I = frozenset({"PPM", "PNG"})
_PILLOW_LIMIT = threading.Lock()
# TIFF ExtraSamples values that declare an alpha channel (1 associated, 2 unassociated).
_TIFF_ALPHA = frozenset({1, 2})
# Multi-page TIFF axes (besides Y, X and samples S) that are channels.
_CHANNEL_AXES = frozenset({"C"})


def is_image_file(path: Path) -> bool:
    """Whether `path`'s name is that of an image file unetzoo reads (by extension; hidden
    files are not). OME-Zarr folders are images too: see `classify_path`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def image_stem(path: Path) -> str:
    """The image's name without its format's suffixes: `scan.ome.tif` -> `scan`,
    `plate.ome.zarr` -> `plate`, `cells.png` -> `cells`."""
    name = Path(path).name
    lower = name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


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
        raise DataError(f"{_not_a_format(path)}; unetzoo reads {FORMATS}", path)


def _suffix(path: Path) -> str:
    """A file's format suffix as people name it: `.nii.gz`, `.ome.tif`, `.png`."""
    name = path.name.lower()
    stem = image_stem(path).lower()
    suffix = name[len(stem):] if name.startswith(stem) and name != stem else path.suffix.lower()
    if suffix == path.suffix.lower() and name.endswith(".gz") and "." in name[:-3]:
        suffix = "." + name[:-3].rsplit(".", 1)[1] + ".gz"  # .nii.gz, .tar.gz
    return suffix or "no extension"


def _not_a_format(path: Path) -> str:
    return f"not an image format unetzoo reads ({_suffix(path)})"


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


# Compressions tifffile decodes with Python's standard library alone.
_STDLIB_CODECS = frozenset({"NONE", "ADOBE_DEFLATE", "DEFLATE", "PACKBITS", "LZMA"})


def missing_codec(what: str, codec: str) -> str | None:
    """Why `codec` (a TIFF compression name such as `LZW`, or an imagecodecs codec name such
    as `JPEGXL`) cannot be decoded here, as one line naming the fix, or None when it can.
    `what` names the data, e.g. "is compressed with LZW"."""
    if codec.upper() in _STDLIB_CODECS:
        return None
    try:
        import imagecodecs
    except ImportError:
        return (f"{what}, which needs the imagecodecs package (a default dependency of "
                "unetzoo): pip install imagecodecs")
    name = {"ZSTD": "ZSTD", "JPEG": "JPEG8", "JPEGXL": "JPEGXL", "JPEG_2000": "JPEG2K",
            "JPEG2000": "JPEG2K", "APERIO_JP2000_YCBC": "JPEG2K",
            "APERIO_JP2000_RGB": "JPEG2K"}.get(codec.upper(), codec.upper())
    available = getattr(getattr(imagecodecs, name, None), "available", True)
    if not available:
        return (f"{what}, which this build of imagecodecs {imagecodecs.__version__} cannot "
                "decode: pip install -U imagecodecs")
    return None


def _check_tiff_codec(page: Any, path: Path) -> None:
    """Raise naming the codec and the fix when `page`'s compression cannot be decoded."""
    from tifffile import TIFF

    compression = page.compression
    name = getattr(compression, "name", str(compression))
    problem = missing_codec(f"is compressed with {name}", name)
    if problem is None and int(compression) != 1:
        try:
            TIFF.DECOMPRESSORS[compression]
        except KeyError:
            problem = (f"is compressed with {name}, which tifffile cannot decode here: pip "
                       "install -U tifffile imagecodecs")
    if problem:
        raise DataError(problem, path)


def arrange_tiff(array: np.ndarray, axes: str, colormap: np.ndarray | None = None
                 ) -> np.ndarray:
    """Stored TIFF pixels of `axes` (tifffile's letters; axes other than C, S, Y and X of
    size 1) as `H x W` or `H x W x C` (channels before samples), palette indices expanded to
    the 16-bit colours of `colormap` when given."""
    keep = [a for a in axes if a in ("C", "S", "Y", "X")]
    array = array.reshape([n for a, n in zip(axes, array.shape, strict=True) if a in keep]
                          or array.shape)
    order = [keep.index(a) for a in ("Y", "X", "C", "S") if a in keep]
    array = np.transpose(array, order)
    if array.ndim == 4:  # channels x samples
        array = array.reshape(*array.shape[:2], -1)
    if colormap is not None:
        array = np.moveaxis(np.asarray(colormap)[:, array], 0, -1)
    return array


def _read_tiff(path: Path, data: bytes | None = None, palette: bool = True) -> Pixels:
    import tifffile

    try:
        with tifffile.TiffFile(_source(path, data)) as tif:
            layout = _tiff_layout(tif, path)
            check_pixels(layout.shape["Y"], layout.shape["X"], path)
            _check_tiff_codec(layout.page, path)
            array = layout.series.asarray()
            page = layout.page
            colormap = page.colormap if int(page.photometric) == 3 else None
            axes, alpha = layout.axes, layout.alpha
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise DataError(f"cannot read TIFF: {exc}", path) from exc
    return Pixels(arrange_tiff(array, axes, None if palette else colormap), alpha)


def npy_axes(shape: tuple[int, ...], path: Path) -> str:
    """The layout of a `.npy` array of `shape`: `YX` (2-D, one channel), `YXC` (3-D whose
    last axis is at most `NPY_MAX_CHANNELS` long) or `CYX` (3-D whose first axis is at most
    that long and whose last is longer: the layout of PyTorch and of BioImage Model Zoo
    tensors). A leading axis of size 1 (a batch of one) is dropped first.

    Raises:
        DataError: naming `path`, for arrays of another number of dimensions or 3-D arrays
            with no axis short enough to be channels (a z-stack, a time series).
    """
    dims = list(shape)
    while len(dims) > 3 and dims[0] == 1:
        dims.pop(0)
    if len(dims) == 2:
        return "YX"
    if len(dims) == 3:
        if dims[2] <= NPY_MAX_CHANNELS:
            return "YXC"
        if dims[0] <= NPY_MAX_CHANNELS:
            return "CYX"
        raise DataError(f"is a .npy array of shape {tuple(shape)}: no axis of at most "
                        f"{NPY_MAX_CHANNELS} channels first or last (a z-stack or time "
                        "series?); save one 2D image per file, H x W x C or C x H x W", path)
    raise DataError(f"is a .npy array of shape {tuple(shape)}; an image is H x W, H x W x C "
                    "or C x H x W", path)


def _load_npy(path: Path, data: bytes | None, mmap: bool = False) -> np.ndarray:
    """The array of a `.npy` file (memory-mapped when `mmap`), never unpickling objects."""
    try:
        array = np.load(_source(path, data), mmap_mode="r" if mmap and data is None else None,
                        allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # object arrays, truncated or not .npy
        raise DataError(f"cannot read .npy array ({exc})", path) from exc
    if not isinstance(array, np.ndarray):
        raise DataError("is not a .npy array", path)
    if array.dtype.kind not in "biuf":
        raise DataError(f"is a .npy array of dtype {array.dtype}; images are bool, integer "
                        "or float", path)
    return array


def npy_image_view(array: np.ndarray, path: Path) -> np.ndarray:
    """A `.npy` array as `H x W` or `H x W x C` (a view: no pixel is read)."""
    axes = npy_axes(array.shape, path)
    array = array.reshape(array.shape[-3:] if axes != "YX" else array.shape[-2:])
    return np.moveaxis(array, 0, -1) if axes == "CYX" else array


def _read_npy(path: Path, data: bytes | None = None) -> Pixels:
    array = _load_npy(path, data, mmap=True)
    view = npy_image_view(array, path)
    check_pixels(view.shape[0], view.shape[1], path)
    array = np.array(view)  # read from the memory map
    return Pixels(array.astype(np.float32) if array.dtype == np.float16 else array)


def _read_ome_zarr(path: Path) -> Pixels:
    """Level 0 of an OME-Zarr image, whole, as `H x W` or `H x W x C` (`unetzoo.data.large`
    reads it by regions)."""
    image = open_ngff(path)
    shape = dict(zip(image.names, image.arrays[0].shape, strict=True))
    check_pixels(shape["y"], shape["x"], path)
    index = tuple(slice(None) if n in "cyx" else 0 for n in image.names)
    kept = [n for n in image.names if n in "cyx"]
    array = np.transpose(np.asarray(image.arrays[0][index]),
                         [kept.index(n) for n in "yxc" if n in kept])
    return Pixels(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def _read_codec(path: Path, data: bytes | None = None) -> Pixels:
    """JPEG XL through imagecodecs: its channels are 1 or 3 colour channels and an alpha
    channel after them (2 or 4 channels)."""
    if problem := missing_codec("is a JPEG XL image", "JPEGXL"):
        raise DataError(problem, path)
    import imagecodecs

    try:
        raw = path.read_bytes() if data is None else data
        array = imagecodecs.jpegxl_decode(raw)
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from exc
    except Exception as exc:  # imagecodecs raises its own error types for broken files
        raise DataError(f"cannot read JPEG XL image ({exc})", path) from exc
    if array.ndim == 4:  # frames
        if array.shape[0] != 1:
            raise DataError(f"is an animated JPEG XL image of {array.shape[0]} frames; save "
                            "one 2D image per file", path)
        array = array[0]
    check_pixels(array.shape[0], array.shape[1], path)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return Pixels(array, array.ndim == 3 and array.shape[2] in (2, 4))


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
            frames, kind = getattr(img, "n_frames", 1), img.format  # before any copy
            if frames > 1 and kind != "MPO":  # MPO: a JPEG and its previews
                raise DataError(f"is an animated or multi-frame {img.format} image of {frames} "
                                "frames (a time series?); save one 2D image per file", path)
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
            array = np.asarray(img).copy()
            if img.mode == "I" and kind in _PIL_16BIT_AS_I and array.size and \
                    array.min() >= 0 and array.max() <= 65535:
                array = array.astype(np.uint16)  # 16-bit samples, scaled by 65535
            return Pixels(array, img.mode in _PIL_ALPHA_MODES)


# Pillow plugins that need a library the Pillow build may lack: (feature, format, library).
_PIL_FEATURES = {".webp": ("webp", "WebP", "libwebp"), ".avif": ("avif", "AVIF", "libavif")} | {
    ext: ("jpg_2000", "JPEG 2000", "OpenJPEG")
    for ext in (".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx")}


def _check_pil_codec(path: Path) -> None:
    """Raise naming the library and the fix when Pillow was built without this format."""
    wanted = _PIL_FEATURES.get(path.suffix.lower())
    if wanted is None:
        return
    from PIL import features

    feature, name, library = wanted
    try:
        present = features.check(feature)
    except ValueError:  # a Pillow too old to know the feature
        present = False
    if not present:
        raise DataError(f"is a {name} image, and this Pillow was built without {library}: "
                        "pip install -U pillow (its wheels include it)", path)


def _read_pil(path: Path, data: bytes | None = None, palette: bool = True) -> Pixels:
    """Pixels as stored; palette images give their indices when `palette`, else RGB(A)."""
    _check_pil_codec(path)
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
    if data is None and path.is_dir() and ngff_attributes(path) is not None:
        return _read_ome_zarr(path)
    check_file(path, data)
    suffix = path.suffix.lower()
    if suffix in TIFF_EXTENSIONS:
        pixels = _read_tiff(path, data, palette)
    elif suffix in NPY_EXTENSIONS:
        pixels = _read_npy(path, data)
    elif suffix in CODEC_EXTENSIONS:
        pixels = _read_codec(path, data)
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
    return image_from_pixels(pixels.array, pixels.alpha, channels, path)


def image_from_pixels(array: np.ndarray, alpha: bool, channels: int | None, path: Path
                      ) -> np.ndarray:
    """Stored pixels (`H x W` or `H x W x C`) as `read_image` gives them: float32
    `H x W x C` in [0, 1], the declared alpha channel (`alpha`: the last) dropped, converted
    to `channels` when given.

    Raises:
        DataError: naming `path`, for a channel count that does not fit `channels`.
    """
    array = array if array.ndim == 3 else array[..., None]
    if alpha:
        array = array[..., :-1]
    image = to_unit_float(array)
    if channels is None or channels == image.shape[2]:
        return np.ascontiguousarray(image)
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 1 and image.shape[2] == 3:
        return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    raise DataError(f"has {image.shape[2]} channels; the model expects {channels}", path)


# Integer samples image files hold, scaled by their dtype's maximum like a file's: wider
# integers (numpy's default int64, Pillow's 32-bit mode "I") do not say their range.
_ARRAY_INTEGERS = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.int8, np.int16))


def image_from_array(array: np.ndarray, channels: int | None = None) -> np.ndarray:
    """A numpy image read by the rule of a file holding the same pixels (`read_image` of a
    `.npy` file; a PNG or TIFF of these pixels gives the same): float32 `H x W x C`,
    converted to `channels` when given.

    Layout as `npy_axes` decides: `H x W`, `H x W x C` (at most 4 channels last) or
    `C x H x W`, leading axes of size 1 dropped. Values as `image_from_pixels` takes them:
    uint8 / 255 and uint16 / 65535 (`np.asarray(PIL.Image.open(f))`, `tifffile.imread(f)`),
    int8 / 127 and int16 / 32767 (signed TIFF samples), bool as 0 and 1 (a 1-bit image),
    float16 / 32 / 64 as stored (a float TIFF): values outside [0, 1] are kept, not rescaled.
    An array declares no alpha channel, so each of its channels is an input channel. A
    float32 `H x W x C` array that needs no conversion comes back as it is (no copy).

    Raises:
        DataError: in one line naming the array's shape and dtype, for integers of 32 or 64
            bits (their range is unknown: convert to uint8, uint16 or float), other dtypes
            (complex, object, ...), NaN or infinite values, an empty array or one that is not
            laid out as an image, or channels that do not fit `channels`.
    """
    what = f"a numpy image of shape {tuple(array.shape)} and dtype {array.dtype}"
    if array.dtype.kind in "iu" and array.dtype not in _ARRAY_INTEGERS:
        raise DataError(f"{what}: {array.dtype.itemsize * 8}-bit integers do not say the range "
                        "of their values; convert it: .astype(np.uint8) for 0..255, "
                        ".astype(np.uint16) for 0..65535, or a float array (taken as stored)")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what}: images are bool, 8- or 16-bit integers, or floats")
    if array.size == 0:
        raise DataError(f"{what}: it is empty")
    try:
        view = npy_image_view(array, Path("array"))
    except DataError:
        raise DataError(f"{what}: not laid out as an image; pass H x W, H x W x C (C <= "
                        f"{NPY_MAX_CHANNELS}) or C x H x W") from None
    if array.dtype.kind == "f" and not (np.isfinite(view.min()) and np.isfinite(view.max())):
        raise DataError(f"{what}: holds NaN or infinite values")
    found = view.shape[2] if view.ndim == 3 else 1
    try:
        check_channels(found, channels, Path("array"))
    except DataError:
        hint = f"; if the last is alpha, pass image[..., :{channels}]" \
            if channels is not None and found == channels + 1 else ""
        raise DataError(f"{what}: {found} channels, the model expects {channels}{hint}"
                        ) from None
    if view.dtype == np.float32 and (channels is None or channels == found):
        return view if view.ndim == 3 else view[..., None]
    return image_from_pixels(view, False, channels, Path("array"))


def check_channels(found: int, channels: int | None, path: Path) -> int:
    """The channels `image_from_pixels` gives for an image of `found` channels (after the
    alpha is dropped) when asked for `channels`.

    Raises:
        DataError: naming `path`, when the two do not fit.
    """
    if channels is None or channels == found or (channels, found) in ((3, 1), (1, 3)):
        return found if channels is None else channels
    raise DataError(f"has {found} channels; the model expects {channels}", path)


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
    if data is None and path.is_dir() and ngff_attributes(path) is not None:
        image = open_ngff(path)
        shape = dict(zip(image.names, image.arrays[0].shape, strict=True))
        dtype = np.dtype(image.arrays[0].dtype)
        return ImageHeader(shape["y"], shape["x"], check_channels(shape.get("c", 1), None, path),
                           8 * dtype.itemsize, f"{dtype} {image.names.upper()}")
    check_file(path, data)
    suffix = path.suffix.lower()
    if suffix in NPY_EXTENSIONS:
        array = _load_npy(path, data, mmap=True)
        view = npy_image_view(array, path)
        return ImageHeader(view.shape[0], view.shape[1], 1 if view.ndim == 2 else view.shape[2],
                           8 * array.dtype.itemsize if array.dtype != np.bool_ else 1,
                           f"{array.dtype} {npy_axes(array.shape, path)}")
    if suffix in CODEC_EXTENSIONS:
        pixels = _read_codec(path, data)
        shape = pixels.array.shape
        found = 1 if len(shape) == 2 else shape[2] - pixels.alpha
        return ImageHeader(shape[0], shape[1], found, 8 * pixels.array.dtype.itemsize,
                           f"{pixels.array.dtype} JPEG XL{' alpha' if pixels.alpha else ''}")
    try:
        if suffix in TIFF_EXTENSIONS:
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
            elif mode == "I" and img.format in _PIL_16BIT_AS_I:  # read as uint16
                mode = "I;16"
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


# -- listing folders -------------------------------------------------------------------------
def ngff_attributes(folder: Path) -> dict[str, Any] | None:
    """The OME-NGFF attributes of a Zarr group folder (`.zattrs` of Zarr v2, NGFF 0.4;
    `zarr.json` attributes' `ome` of Zarr v3, NGFF 0.5), or None when `folder` is no Zarr
    group or holds neither multiscales nor a bioformats2raw layout. Reads two small JSON
    files at most."""
    import json

    for name in ("zarr.json", ".zattrs"):
        try:
            attrs = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(attrs, dict):
            continue
        if name == "zarr.json":
            attrs = attrs.get("attributes") or {}
            attrs = attrs.get("ome", attrs) if isinstance(attrs, dict) else {}
        if isinstance(attrs, dict) and ("multiscales" in attrs
                                        or "bioformats2raw.layout" in attrs):
            return attrs
    return None


# NGFF axis types that are not pixels of one 2D image.
_NGFF_PLANES = ("time", "space")


@dataclass
class NgffImage:
    """An OME-Zarr image's multiscale arrays (level 0 first, opened lazily with zarr) and
    what its metadata says of them: axis names (`tczyx` letters), axis entries, the
    multiscale entry and its datasets."""

    arrays: list[Any]
    names: str
    axes: list[dict[str, Any]]
    multiscale: dict[str, Any]
    datasets: list[dict[str, Any]]


def open_ngff(path: Path) -> NgffImage:
    """Open an OME-Zarr (NGFF 0.4 / 0.5, or a bioformats2raw layout's first image) without
    reading pixels; 2D images only.

    Raises:
        DataError: broken multiscales metadata, axes that do not fit the array, or more
            than one time point or z-plane.
    """
    import zarr

    attrs = ngff_attributes(path) or {}
    try:
        group = zarr.open_group(path, mode="r")
        if "multiscales" not in attrs:  # bioformats2raw layout: the first image is `0`
            group = group["0"]
            attrs = dict(group.attrs)
            attrs = attrs.get("ome", attrs)
        multiscale = attrs["multiscales"][0]
        datasets = multiscale["datasets"]
        arrays = [group[d["path"]] for d in datasets]
    except (KeyError, IndexError, TypeError, ValueError, FileNotFoundError) as exc:
        raise DataError(f"cannot read OME-Zarr multiscales ({exc!r})", path) from exc
    except Exception as exc:  # zarr raises its own types for broken stores
        raise DataError(f"cannot read OME-Zarr ({exc})", path) from exc
    ndim = arrays[0].ndim
    axes_meta = multiscale.get("axes") or [{"name": n} for n in "tczyx"[-ndim:]]
    axes_meta = [{"name": a} if isinstance(a, str) else a for a in axes_meta]
    names = "".join(str(a.get("name", "?"))[:1].lower() for a in axes_meta)
    if len(names) != ndim or "y" not in names or "x" not in names:
        raise DataError(f"OME-Zarr axes {names!r} do not fit its {ndim}-D array of shape "
                        f"{arrays[0].shape}", path)
    shape0 = dict(zip(names, arrays[0].shape, strict=True))
    for name, meta in zip(names, axes_meta, strict=True):
        if name not in "cyx" and shape0[name] > 1:
            kind = meta.get("type", "")
            what = "a time series" if name == "t" or kind == "time" else \
                "a z-stack" if name == "z" or kind in _NGFF_PLANES else f"axis {name!r}"
            raise DataError(f"is an OME-Zarr {what} ({shape0[name]} planes, axes "
                            f"{names.upper()}); unetzoo reads 2D images: save one plane per "
                            "image", path)
    return NgffImage(arrays, names, axes_meta, multiscale, datasets)


@dataclass(frozen=True)
class Listed:
    """What a folder listing makes of one entry: an image unetzoo reads (`kind` "image", a
    file, or "zarr", an OME-Zarr folder), or an entry skipped, with `kind` one of "hidden",
    "system", "folder", "format", "codec", "empty", "link", "special", "unreadable" and
    `reason` a few words for the user."""

    path: Path
    kind: str
    reason: str = ""

    @property
    def readable(self) -> bool:
        return self.kind in ("image", "zarr")


def classify_path(path: Path) -> Listed:
    """Whether `path` is an image unetzoo reads, or why a listing skips it ("hidden file",
    "a folder (pass --recursive)", "not an image format unetzoo reads (.txt)", "empty file
    (0 bytes)", ...). Looks at the name and `stat` only (and the small metadata files of a
    `.zarr` folder); pixels are never decoded, so a listed image may still fail to read.

    OME-Zarr folders (NGFF 0.4 / 0.5, `open_large` reads them) are images, not folders.
    """
    path = Path(path)
    name = path.name
    if name.lower() in SYSTEM_NAMES or name.startswith("._"):
        return Listed(path, "system", f"a file the operating system made ({name})")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return Listed(path, "link", "a broken or looping symbolic link")
        return Listed(path, "unreadable", "not found")
    except OSError as exc:  # symlink loops, permissions
        kind = "link" if os.path.islink(path) else "unreadable"
        return Listed(path, kind, "a broken or looping symbolic link" if kind == "link"
                      else f"cannot read ({exc.strerror or exc})")
    if name.startswith("."):
        return Listed(path, "hidden", "hidden folder" if stat.S_ISDIR(info.st_mode)
                      else "hidden file")
    if stat.S_ISDIR(info.st_mode):
        if ngff_attributes(path) is not None:
            return Listed(path, "zarr")
        if name.lower().endswith(".zarr"):
            return Listed(path, "format", "a Zarr folder without OME-NGFF multiscales "
                          "metadata (not an image unetzoo reads)")
        return Listed(path, "folder", "a folder (pass --recursive)")
    if not stat.S_ISREG(info.st_mode):
        return Listed(path, "special", "not a regular file (a device, socket or pipe)")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return Listed(path, "format", _not_a_format(path))
    if info.st_size == 0:
        return Listed(path, "empty", "empty file (0 bytes)")
    if suffix in CODEC_EXTENSIONS and (problem := missing_codec("a JPEG XL image", "JPEGXL")):
        return Listed(path, "codec", problem)
    return Listed(path, "image")


def list_images(folder: Path, recursive: bool = False) -> tuple[list[Path], list[Listed]]:
    """The images of `folder` (sorted; with `recursive`, those of its sub-folders too,
    hidden folders and OME-Zarr folders not entered) and the entries skipped (see
    `classify_path`), so a command can say what it will not read before any work.

    Raises:
        DataError: naming `folder`, when it cannot be listed.
    """
    folder = Path(folder)
    images: list[Path] = []
    skipped: list[Listed] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise DataError(f"cannot list folder ({exc.strerror or exc})", folder) from exc
    for name in names:
        entry = classify_path(folder / name)
        if entry.readable:
            images.append(entry.path)
        elif entry.kind == "folder" and recursive:
            found, missed = list_images(entry.path, recursive=True)
            images += found
            skipped += missed
        else:
            skipped.append(entry)
    return images, skipped


def describe_skipped(skipped: list[Listed], root: Path | None = None, shown: int = 3
                     ) -> list[str]:
    """One line per kind of skipped entry, e.g. "skipped 3 entries: not image formats
    unetzoo reads (.dcm, .nii.gz, .txt): IM-0001.dcm, case_01.nii.gz, notes.txt"; names
    relative to `root` when given, at most `shown` of them per line."""
    groups: dict[str, list[Listed]] = {}
    for entry in skipped:
        groups.setdefault(entry.kind, []).append(entry)
    lines = []
    for kind, entries in groups.items():
        names = [str(e.path.relative_to(root)) if root is not None and
                 e.path.is_relative_to(root) else e.path.name for e in entries]
        if kind == "format":
            suffixes = sorted({_suffix(e.path) for e in entries if e.path.is_file()})
            others = sorted({e.reason for e in entries if not e.path.is_file()})
            what = "; ".join(([f"not {'image formats' if len(suffixes) > 1 else 'an image format'}"
                               f" unetzoo reads ({', '.join(suffixes)})"] if suffixes else [])
                             + others)
        else:
            reasons = list(dict.fromkeys(e.reason for e in entries))
            what = reasons[0] if len(reasons) == 1 else "; ".join(reasons[:3])
            if kind == "system":
                what = "files the operating system made" if len(entries) > 1 else \
                    "a file the operating system made"
        more = f", +{len(names) - shown} more" if len(names) > shown else ""
        lines.append(f"skipped {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: "
                     f"{what}: {', '.join(names[:shown])}{more}")
    return lines
