"""Images of any size read region by region, in memory bounded by the region.

`open_large(path)` opens an image without reading its pixels and gives a `LargeImage`: its
size, the channels `read_image` would give, the stored dtype and its scaling to [0, 1], the
stored axes, the physical pixel size, the pyramid levels, and `read_region(y0, y1, x0, x1)`,
which decodes only the tiles or strips that the region touches:

- TIFF (tiled or striped, BigTIFF, OME-TIFF, ImageJ, whole-slide SVS / NDPI / SCN ...): the
  full-resolution level of the first series (`series[0].levels[0]`, tifffile), read through
  tifffile's Zarr store (tile by tile, strip by strip) or, uncompressed and contiguous,
  memory-mapped. The channel rules of `read_image` hold (declared alpha dropped, palettes
  expanded, planar and ImageJ `CYX` pages kept; z-stacks refused).
- OME-Zarr (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3; a bioformats2raw layout opens its first
  image): level 0 of the first multiscales, axes from its metadata; singleton `t` / `z` axes
  are dropped, longer ones refused.
- `.npy`: memory-mapped, laid out as `unetzoo.data.io.npy_axes` says.
- anything else (PNG, JPEG, WebP ...): read whole by `read_pixels` when opened (these
  formats cannot be decoded a region at a time).

Pixel values scale as `read_image` scales them (8-bit / 255, 16-bit / 65535, float as
stored). Region reads are not limited by `max_image_pixels()`: only the whole-image fallback
is (and TIFF strips or tiles larger than that limit).

The physical pixel size comes from OME metadata (OME-TIFF, OME-Zarr coordinate
transformations), an ImageJ description, the Aperio (SVS) `MPP`, TIFF resolution tags
(with a centimetre, inch, millimetre or micrometre unit) or a PNG `pHYs` chunk, in
micrometres; None when the file gives none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import io as imageio

# Micrometres per unit, for the unit names of OME (`µm`), OME-NGFF (UDUNITS-2 `micrometer`),
# ImageJ (`micron`, `um`, `\u00B5m`) and TIFF resolution units.
_MICROMETRES: dict[str, float] = {
    "pm": 1e-6, "picometer": 1e-6, "å": 1e-4, "angstrom": 1e-4, "nm": 1e-3,
    "nanometer": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "\\u00b5m": 1.0, "mm": 1e3, "millimeter": 1e3,
    "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6, "in": 25_400.0, "inch": 25_400.0}


@dataclass(frozen=True)
class PixelSize:
    """The physical size of a pixel: `x` (across columns) and `y` (down rows) in
    micrometres, and where it was read (`source`, e.g. "OME metadata")."""

    x: float
    y: float
    source: str = ""
    unit: str = "micrometer"

    def __str__(self) -> str:
        size = f"{self.x:.4g}" if math.isclose(self.x, self.y, rel_tol=1e-6) else \
            f"{self.x:.4g} x {self.y:.4g}"
        return f"{size} µm per pixel" + (f" ({self.source})" if self.source else "")


def pixel_size(x: float | None, y: float | None, unit: str | None, source: str
               ) -> PixelSize | None:
    """A `PixelSize` from sizes `x`, `y` in `unit` (any name in OME, NGFF, ImageJ or TIFF
    spelling; None: micrometres), or None when a size is missing, not positive or the unit
    is not a length."""
    factor = _MICROMETRES.get((unit or "µm").strip().lower())
    try:
        x, y = float(x), float(y)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if factor is None or not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
        return None
    return PixelSize(x * factor, y * factor, source)


@dataclass
class LargeImage:
    """An image opened by `open_large`; its pixels are read only by `read_region`,
    `overview` or indexing (`image[y0:y1, x0:x1]`, as a numpy `H x W x C` image would be).

    Attributes:
        path: the file or folder.
        shape: (height, width) in pixels of the full-resolution level.
        channels: the channels `read_region` gives (`read_image`'s channels for the file, or
            the `channels` asked for).
        dtype: the dtype of the values scaled to [0, 1] (a palette's colours: uint16).
        scale: the factor that takes those values to [0, 1] (1 / 255, 1 / 65535; 1.0 for
            float data, kept as stored).
        axes: the stored axes, e.g. `YXS` (TIFF samples), `CYX`, `TCZYX` (OME-Zarr), `YXC`.
        pixel_size: micrometres per pixel, or None.
        levels: (height, width) of each pyramid level, full resolution first.
        reader: how regions are read: "tiff" (tile or strip decoding), "memmap" (an
            uncompressed TIFF or a `.npy`), "ome-zarr" or "whole" (read whole once).
        chunk: (rows, columns) of the stored tiles or strips, or None.
    """

    path: Path
    shape: tuple[int, int]
    channels: int
    dtype: np.dtype
    axes: str
    pixel_size: PixelSize | None
    levels: list[tuple[int, int]]
    reader: str
    chunk: tuple[int, int] | None
    _read: Callable[[int, int, int, int, int], np.ndarray] = field(repr=False)
    _alpha: bool = field(repr=False, default=False)
    _wanted: int | None = field(repr=False, default=None)
    _close: Callable[[], None] | None = field(repr=False, default=None)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def scale(self) -> float:
        if np.issubdtype(self.dtype, np.integer):
            return 1.0 / float(np.iinfo(self.dtype).max)
        return 1.0

    @property
    def scale_rule(self) -> str:
        """The scaling in words, e.g. "uint16 / 65535" or "float32 as stored"."""
        if np.issubdtype(self.dtype, np.integer):
            return f"{self.dtype} / {np.iinfo(self.dtype).max}"
        return f"{self.dtype} {'0 or 1' if self.dtype == np.bool_ else 'as stored'}"

    def read_region(self, y0: int, y1: int, x0: int, x1: int, level: int = 0) -> np.ndarray:
        """Rows `y0:y1` and columns `x0:x1` (of pyramid `level`, full resolution by default)
        as float32 `h x w x C` in [0, 1], exactly as `read_image` gives those pixels.

        Raises:
            ValueError: the region is empty or outside the image.
            DataError: naming the file, when its pixels cannot be decoded.
        """
        height, width = self.levels[level]
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f"region [{y0}:{y1}, {x0}:{x1}] is empty or outside the "
                             f"{height} x {width} image {self.path}")
        try:
            pixels = self._read(level, y0, y1, x0, x1)
        except (DataError, ValueError):
            raise
        except Exception as exc:  # tifffile, zarr and codecs raise many types
            raise DataError(f"cannot read region [{y0}:{y1}, {x0}:{x1}] ({exc})",
                            self.path) from exc
        return imageio.image_from_pixels(pixels, self._alpha, self._wanted, self.path)

    def __getitem__(self, key: Any) -> np.ndarray:
        """`image[y0:y1, x0:x1]` (steps of 1; a trailing `:` or `...` allowed): the region
        as `read_region` gives it, bounds clipped as numpy clips them."""
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(k for k in key if k is not Ellipsis)
        if len(key) == 3 and key[2] == slice(None):
            key = key[:2]
        if len(key) == 1:
            key = (key[0], slice(None))
        if len(key) != 2 or not all(isinstance(k, slice) for k in key):
            raise TypeError("index a LargeImage with two slices: image[y0:y1, x0:x1]")
        y0, y1, ys = key[0].indices(self.height)
        x0, x1, xs = key[1].indices(self.width)
        if ys != 1 or xs != 1:
            raise TypeError("a LargeImage region is read with steps of 1")
        return self.read_region(y0, y1, x0, x1)

    def overview(self, max_pixels: int = 4_000_000) -> np.ndarray:
        """The whole image, shrunk to at most about `max_pixels` pixels, as float32
        `h x w x C` in [0, 1]: the coarsest pyramid level with at least `max_pixels` pixels
        (or level 0), every k-th row and column of it, read a block at a time (memory: one
        block of about 1024 x 1024 pixels, plus the result). For normalisation statistics,
        a thumbnail, a preview.
        A pyramid level is the file's own downsampling (often an average), not a subsample
        of level 0."""
        level = max((i for i, (h, w) in enumerate(self.levels) if h * w >= max_pixels),
                    default=0)
        height, width = self.levels[level]
        step = max(1, math.ceil(math.sqrt(height * width / max_pixels)))
        block = -(-1024 // step) * step  # whole steps: the pixels kept are every step-th
        rows = []
        for y in range(0, height, block):
            rows.append(np.concatenate(
                [self.read_region(y, min(y + block, height), x, min(x + block, width),
                                  level)[::step, ::step] for x in range(0, width, block)],
                axis=1))
        return np.concatenate(rows, axis=0)

    def close(self) -> None:
        """Close the file (regions can no longer be read)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> LargeImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_large(path: Path | str, channels: int | None = None) -> LargeImage:
    """Open the image at `path` (a file, or an OME-Zarr folder) for region reads, reading
    its metadata only (see the module docstring for each format).

    Args:
        path: the image.
        channels: the channels regions are converted to (gray replicated to 3, RGB to
            luminance), as `read_image`'s `channels`; None keeps the file's own.

    Returns:
        A `LargeImage`; close it (or use it in a `with` block) when done.

    Raises:
        DataError: naming `path`, for files that cannot be read, TIFF pages that are not
            channels, OME-Zarr z-stacks or time series, a missing codec, or a channel count
            that does not fit `channels`.
    """
    path = Path(path)
    if path.is_dir():
        if imageio.ngff_attributes(path) is None:
            raise DataError("is a folder, not an OME-Zarr image (no OME-NGFF multiscales "
                            "metadata in .zattrs or zarr.json)", path)
        return _open_ome_zarr(path, channels)
    imageio.check_file(path)
    suffix = path.suffix.lower()
    if suffix in imageio.TIFF_EXTENSIONS:
        return _open_tiff(path, channels)
    if suffix in imageio.NPY_EXTENSIONS:
        return _open_npy(path, channels)
    return _open_whole(path, channels)


# -- TIFF ----------------------------------------------------------------------------------
def _tiff_pixel_size(tif: Any, page: Any) -> PixelSize | None:
    import tifffile

    if tif.is_ome and tif.ome_metadata:
        try:
            image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        except (KeyError, IndexError, TypeError, ValueError):
            pixels = {}
        unit_x = pixels.get("PhysicalSizeXUnit", "µm")
        if pixels.get("PhysicalSizeYUnit", "µm") == unit_x:
            found = pixel_size(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY"),
                               unit_x, "OME metadata")
        else:  # units differ: each converted
            x = pixel_size(pixels.get("PhysicalSizeX"), 1, unit_x, "")
            y = pixel_size(1, pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit"), "")
            found = PixelSize(x.x, y.y, "OME metadata") if x and y else None
        if found:
            return found
    if tif.is_svs:
        try:
            mpp = tifffile.svs_description_metadata(tif.pages[0].description).get("MPP")
        except (ValueError, AttributeError):
            mpp = None
        if found := pixel_size(mpp, mpp, "µm", "Aperio MPP"):
            return found
    resolution = getattr(page, "resolution", None)
    if not resolution or not all(resolution):
        return None
    x, y = (1.0 / float(r) for r in resolution)
    if tif.is_imagej and tif.imagej_metadata and tif.imagej_metadata.get("unit"):
        return pixel_size(x, y, str(tif.imagej_metadata["unit"]), "ImageJ metadata")
    unit = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}.get(int(page.resolutionunit))
    if unit is None or (x, y) == (1.0, 1.0):
        return None
    return pixel_size(x, y, unit, f"TIFF resolution tags ({unit})")


def _open_tiff(path: Path, channels: int | None) -> LargeImage:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises many types for broken files
        raise DataError(f"cannot read TIFF: {exc}", path) from exc
    try:
        layout = imageio._tiff_layout(tif, path)
        page = layout.page
        imageio._check_tiff_codec(page, path)
        series = layout.series
        axes = series.axes
        colormap = page.colormap if int(page.photometric) == 3 else None
        found = layout.channels
        wanted = imageio.check_channels(found, channels, path)
        levels = [(lvl.shape[axes.index("Y")], lvl.shape[axes.index("X")])
                  for lvl in series.levels]
        arrays: dict[int, Any] = {}
        reader, chunk = "tiff", None
        if page.is_tiled:
            chunk = (int(page.tilelength), int(page.tilewidth))
        else:
            chunk = (min(int(page.rowsperstrip or levels[0][0]), levels[0][0]), levels[0][1])
        if series.dataoffset is not None and int(page.compression) == 1 and \
                len(series.levels) == 1:
            arrays[0] = tifffile.memmap(path, series=0, mode="r")  # contiguous, uncompressed
            reader = "memmap"
        elif chunk[0] * chunk[1] > (imageio.max_image_pixels() or math.inf):
            raise DataError(f"stores its pixels compressed in strips of {chunk[1]}x{chunk[0]} "
                            f"({chunk[0] * chunk[1]:,} pixels), more than the "
                            f"{imageio.max_image_pixels():,} read at once by default; every "
                            "region decodes a whole strip: save it tiled (e.g. tifffile "
                            f"tile=(512, 512)) or set {imageio.MAX_PIXELS_VARIABLE}=0", path)
        else:  # opened now (zarr's import and the tile index), not at the first region
            import zarr

            arrays[0] = zarr.open_array(tif.aszarr(series=0, level=0), mode="r")
        pixel = _tiff_pixel_size(tif, page)
        dtype = np.dtype(np.uint16) if colormap is not None else np.dtype(series.dtype)
    except DataError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise DataError(f"cannot read TIFF: {exc}", path) from exc

    def level_array(level: int) -> Any:
        if level not in arrays:
            import zarr

            arrays[level] = zarr.open_array(tif.aszarr(series=0, level=level), mode="r")
        return arrays[level]

    def read(level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        index = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else
                      slice(None) for a in axes)
        raw = np.asarray(level_array(level)[index])
        return imageio.arrange_tiff(raw, axes, colormap)

    return LargeImage(path, levels[0], wanted, dtype, axes, pixel, levels, reader, chunk,
                      read, layout.alpha, channels, tif.close)


# -- OME-Zarr ------------------------------------------------------------------------------
def _ngff_scale(transforms: list[dict[str, Any]] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for transform in transforms or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
            scale = [a * float(b) for a, b in zip(scale, transform["scale"], strict=True)]
    return scale


def _open_ome_zarr(path: Path, channels: int | None) -> LargeImage:
    level0 = imageio.open_ngff(path)
    arrays, names, axes_meta = level0.arrays, level0.names, level0.axes
    multiscale, datasets, ndim = level0.multiscale, level0.datasets, arrays[0].ndim
    shape0 = dict(zip(names, arrays[0].shape, strict=True))
    found = shape0.get("c", 1)
    wanted = imageio.check_channels(found, channels, path)
    scale = _ngff_scale(datasets[0].get("coordinateTransformations"), ndim)
    outer = _ngff_scale(multiscale.get("coordinateTransformations"), ndim)
    units = {n: m.get("unit") for n, m in zip(names, axes_meta, strict=True)}
    iy, ix = names.index("y"), names.index("x")
    pixel = None
    if units.get("x") and units.get("y"):
        x = pixel_size(scale[ix] * outer[ix], 1, units["x"], "")
        y = pixel_size(1, scale[iy] * outer[iy], units["y"], "")
        pixel = PixelSize(x.x, y.y, "OME-Zarr coordinate transformations") if x and y else None
    levels = [(a.shape[iy], a.shape[ix]) for a in arrays]
    chunks = arrays[0].chunks

    def read(level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        index = tuple(slice(y0, y1) if n == "y" else slice(x0, x1) if n == "x" else
                      slice(None) if n == "c" else 0 for n in names)
        raw = np.asarray(arrays[level][index])
        kept = [n for n in names if n in "cyx"]
        return np.transpose(raw, [kept.index(n) for n in "yxc" if n in kept])

    return LargeImage(path, levels[0], wanted, np.dtype(arrays[0].dtype), names.upper(),
                      pixel, levels, "ome-zarr", (chunks[iy], chunks[ix]), read, False,
                      channels)


# -- .npy and whole images -----------------------------------------------------------------
def _open_npy(path: Path, channels: int | None) -> LargeImage:
    array = imageio._load_npy(path, None, mmap=True)
    view = imageio.npy_image_view(array, path)
    found = 1 if view.ndim == 2 else view.shape[2]
    wanted = imageio.check_channels(found, channels, path)
    dtype = np.dtype(np.float32) if array.dtype == np.float16 else array.dtype

    def read(level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.asarray(view[y0:y1, x0:x1], dtype=dtype)

    close = getattr(getattr(array, "_mmap", None), "close", None)
    return LargeImage(path, (view.shape[0], view.shape[1]), wanted, dtype,
                      imageio.npy_axes(array.shape, path), None, [view.shape[:2]], "memmap",
                      None, read, False, channels, close)


def read_pixel_size(path: Path | str) -> PixelSize | None:
    """The physical pixel size an image file or OME-Zarr folder states (see the module
    docstring), or None; only metadata is read.

    Raises:
        DataError: naming `path`, for files that cannot be read.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in imageio.TIFF_EXTENSIONS:
        with open_large(path) as image:
            return image.pixel_size
    if path.suffix.lower() != ".png":
        return None
    from PIL import Image

    try:
        with Image.open(path) as img:
            dpi = img.info.get("dpi")  # set by Pillow from a pHYs chunk in pixels per metre
    except OSError as exc:
        raise DataError(f"cannot read image ({exc})", path) from exc
    return pixel_size(1 / dpi[0], 1 / dpi[1], "inch", "PNG pHYs") if dpi and all(dpi) else None


def _open_whole(path: Path, channels: int | None) -> LargeImage:
    header = imageio.read_header(path)
    wanted = imageio.check_channels(header.channels, channels, path)
    cache: list[imageio.Pixels] = []

    def pixels() -> imageio.Pixels:
        if not cache:
            cache.append(imageio.read_pixels(path, palette=False))
        return cache[0]

    def read(level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return pixels().array[y0:y1, x0:x1]

    image = LargeImage(path, header.size, wanted, np.dtype(np.uint8), header.mode, None,
                       [header.size], "whole", None, read, False, channels, cache.clear)
    first = pixels()  # the stored dtype and alpha are known once decoded
    image.dtype, image._alpha = first.array.dtype, first.alpha
    image.axes = "YXC" if first.array.ndim == 3 else "YX"
    image.pixel_size = read_pixel_size(path)
    return image
