"""Writing masks and label images, small or of any size, with the input's pixel size.

Large outputs are written from bands of rows as a predictor produces them, top to bottom,
and never held whole (memory: one row of tiles):

- `write_tiled_tiff`: a tiled, compressed BigTIFF with OME-XML metadata (axes `YX`,
  PhysicalSizeX / Y) and resolution tags (pixels per centimetre);
- `write_ome_zarr`: an OME-Zarr image (OME-NGFF 0.4 on Zarr v2, or 0.5 on Zarr v3) with a
  multiscales pyramid (each level every second row and column of the one before: labels
  stay labels), axes `y`, `x` and the pixel size as scale transformations.

`write_tiled` picks one of them by the target's name. Small outputs, whole in memory:
`write_label_tiff` (16-bit, or 32-bit when ids exceed 65,535; ImageJ-calibrated when
16-bit) and `write_label_png` (8 or 16-bit; refuses labels that do not fit).

Everything is written beside the target and renamed into place at the end
(`unetzoo.fileio.atomic_write`, `atomic_folder`): a kill leaves the old output or none,
never half of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, RunError
from ..fileio import atomic_folder, atomic_write
from .io import image_stem
from .large import PixelSize

LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))
TIFF_COMPRESSIONS = ("zlib", "zstd", "lzw", "none")  # zlib: read by every TIFF reader
ZARR_COMPRESSIONS = ("zstd", "zlib", "none")
NGFF_VERSIONS = ("0.4", "0.5")


def label_dtype(largest: int, smallest: int = 0, bits: int | None = None,
                path: Path | None = None) -> np.dtype:
    """The unsigned dtype that holds labels from `smallest` to `largest`: `bits` (8, 16 or
    32) when given, else the smallest of uint8, uint16, uint32.

    Raises:
        DataError: naming `path`, for negative labels or labels that do not fit.
    """
    if smallest < 0:
        raise DataError(f"holds negative labels ({smallest}); labels are 0 (background) or "
                        "positive ids", path)
    fits = [d for d in LABEL_DTYPES if largest <= np.iinfo(d).max]
    if bits is not None:
        wanted = np.dtype(f"uint{bits}")
        if wanted not in LABEL_DTYPES:
            raise ConfigError(f"label images are 8, 16 or 32-bit, not {bits}-bit")
        if wanted not in fits:
            raise DataError(f"holds labels up to {largest:,}, more than a {bits}-bit image "
                            f"holds ({np.iinfo(wanted).max:,})", path)
        return wanted
    if not fits:
        raise DataError(f"holds labels up to {largest:,}, more than 32 bits hold", path)
    return fits[0]


def _as_labels(array: Any, dtype: np.dtype, path: Path) -> np.ndarray:
    """`array` (numpy, or anything `np.asarray` takes: a CPU tensor) as `dtype`, refusing
    values that would change: negatives, fractions, values past the dtype's maximum."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.astype(dtype)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise DataError("labels must be whole numbers; found fractions or NaN", path)
    elif array.dtype.kind not in "iu":
        raise DataError(f"labels of dtype {array.dtype} cannot be written", path)
    if array.size:
        low, high = array.min(), array.max()
        if low < 0 or high > np.iinfo(dtype).max:
            raise DataError(f"holds labels from {low} to {high}, which do not fit {dtype} "
                            f"(0 to {np.iinfo(dtype).max:,})", path)
    return array.astype(dtype, copy=False)


def _row_blocks(bands: Iterable[Any], shape: tuple[int, int], dtype: np.dtype, rows: int,
                path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(top row, block) for the bands of rows in `bands` (each `r x W`, any number of rows)
    regrouped into blocks of exactly `rows` rows (the last may be shorter), top to bottom.

    Raises:
        DataError: naming `path`, for a band of another width or dimension, labels that do
            not fit `dtype`, or bands that add up to more or fewer rows than `shape[0]`.
    """
    height, width = shape
    pending: list[np.ndarray] = []
    held = top = 0
    for band in bands:
        band = _as_labels(band, dtype, path)
        if band.ndim != 2 or band.shape[1] != width:
            raise DataError(f"a band of shape {band.shape} does not fit an image of "
                            f"{height} x {width}: bands are rows x {width}", path)
        if top + held + band.shape[0] > height:
            raise DataError(f"bands add up to more than the {height} rows of the image", path)
        pending.append(band)
        held += band.shape[0]
        while held >= rows:
            block = np.concatenate(pending, axis=0) if len(pending) > 1 else pending[0]
            yield top, block[:rows]
            rest = block[rows:]
            pending, held, top = ([rest] if len(rest) else []), len(rest), top + rows
    if top + held != height:  # said before the last block: a consumer may stop there
        raise DataError(f"bands add up to {top + held} rows; the image has {height}", path)
    if held:
        yield top, np.concatenate(pending, axis=0)


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise RunError("exists; pass --overwrite (overwrite=True) to replace it", path)


def _ome_metadata(pixel_size: PixelSize | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"axes": "YX"}
    if pixel_size is not None:
        metadata |= {"PhysicalSizeX": pixel_size.x, "PhysicalSizeXUnit": "µm",
                     "PhysicalSizeY": pixel_size.y, "PhysicalSizeYUnit": "µm"}
    return metadata


def _resolution(pixel_size: PixelSize | None) -> dict[str, Any]:
    """TIFF resolution tags: pixels per centimetre (1e4 micrometres)."""
    if pixel_size is None:
        return {}
    return {"resolution": (1e4 / pixel_size.x, 1e4 / pixel_size.y),
            "resolutionunit": "CENTIMETER"}


def write_tiled_tiff(path: Path | str, bands: Iterable[Any], shape: tuple[int, int],
                     dtype: Any = np.uint16, *, pixel_size: PixelSize | None = None,
                     tile: int = 256, compression: str = "zlib", overwrite: bool = False
                     ) -> Path:
    """Write a mask or label image given as bands of rows, top to bottom, as a tiled,
    compressed BigTIFF (OME-TIFF metadata, resolution tags), without holding it whole.

    Args:
        path: the TIFF to write (`.ome.tif` is the usual name).
        bands: `r x W` arrays (any number of rows each, numpy or CPU tensors) adding up to
            `shape[0]` rows; bool, integer or whole float values.
        shape: (height, width) of the image.
        dtype: uint8 (masks), uint16 or uint32 (labels).
        pixel_size: the input's pixel size, written as OME PhysicalSizeX / Y (µm) and as
            resolution tags (pixels per cm); None writes neither.
        tile: tile side, a multiple of 16.
        compression: "zlib" (Deflate: every reader), "zstd" (smaller, faster; needs a
            reader with Zstd, e.g. tifffile with imagecodecs, Bio-Formats 7), "lzw", "none".
        overwrite: replace an existing `path`.

    Returns:
        `path`. Memory: one row of tiles (`tile x W`) and the band being regrouped.

    Raises:
        ConfigError: an unknown dtype or compression, or a tile side not a multiple of 16.
        DataError: naming `path`, for bands that do not fit `shape` or `dtype`.
        RunError: `path` exists and `overwrite` is False.
    """
    import tifffile

    path = Path(path)
    dtype = _check_options(dtype, compression, TIFF_COMPRESSIONS, tile)
    _check_target(path, overwrite)
    height, width = shape

    blocks = _row_blocks(bands, shape, dtype, tile, path)

    def tiles() -> Iterator[np.ndarray]:
        for _, block in blocks:
            if block.shape[0] < tile:
                block = np.pad(block, ((0, tile - block.shape[0]), (0, 0)))
            for x in range(0, width, tile):
                piece = block[:, x: x + tile]
                if piece.shape[1] < tile:
                    piece = np.pad(piece, ((0, 0), (0, tile - piece.shape[1])))
                yield np.ascontiguousarray(piece)

    def write(fh: Any) -> None:
        with tifffile.TiffWriter(_named(fh, path), bigtiff=True, ome=True) as tiff:
            tiff.write(tiles(), shape=(height, width), dtype=dtype, tile=(tile, tile),
                       photometric="minisblack",
                       compression=None if compression == "none" else compression,
                       metadata=_ome_metadata(pixel_size), **_resolution(pixel_size))
        for _ in blocks:  # tifffile stops at the last tile: bands past it are refused here
            raise DataError(f"bands add up to more than the {height} rows of the image", path)

    return atomic_write(path, write)


def _named(fh: Any, path: Path) -> Any:
    """The open temporary file of `atomic_write` as a tifffile handle named as `path` (its
    own name is a file descriptor number, which tifffile cannot take)."""
    import tifffile

    return tifffile.FileHandle(fh, mode="wb", name=path.name)


def _check_options(dtype: Any, compression: str, allowed: tuple[str, ...], tile: int
                   ) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in LABEL_DTYPES:
        raise ConfigError(f"masks and labels are written as uint8, uint16 or uint32, not "
                          f"{dtype}")
    if compression not in allowed:
        raise ConfigError(f"compression {compression!r} is not one of {', '.join(allowed)}")
    if tile < 16 or tile % 16:
        raise ConfigError(f"tile side {tile} must be a multiple of 16")
    return dtype


def _zarr_compressor(compression: str, version: str) -> Any:
    if compression == "none":
        return None
    if version == "0.4":
        import numcodecs

        return numcodecs.Zstd(level=3) if compression == "zstd" else numcodecs.Zlib(level=6)
    from zarr.codecs import GzipCodec, ZstdCodec

    return ZstdCodec(level=3) if compression == "zstd" else GzipCodec(level=6)


def pyramid_shapes(shape: tuple[int, int], chunk: int, levels: int | None = None
                   ) -> list[tuple[int, int]]:
    """(height, width) of each pyramid level, full size first, each half the one before
    (rounded up); `levels` of them, or (None) until both sides fit one chunk."""
    shapes = [tuple(shape)]
    while (levels is None and max(shapes[-1]) > chunk) or \
            (levels is not None and len(shapes) < levels):
        shapes.append((-(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)))
    return shapes  # type: ignore[return-value]


def write_ome_zarr(path: Path | str, bands: Iterable[Any], shape: tuple[int, int],
                   dtype: Any = np.uint16, *, pixel_size: PixelSize | None = None,
                   chunk: int = 256, compression: str = "zstd", levels: int | None = None,
                   version: str = "0.4", overwrite: bool = False) -> Path:
    """Write a mask or label image given as bands of rows, top to bottom, as an OME-Zarr
    image with a multiscales pyramid, without holding it whole.

    Level 0 is written as the bands come; each further level is every second row and
    column of the level before (nearest-neighbour: labels stay labels), read back a band of
    chunks at a time. The metadata follows OME-NGFF (https://ngff.openmicroscopy.org):
    `multiscales` with axes `y`, `x` (type space, unit micrometer when the pixel size is
    known) and a scale transformation per level.

    Args:
        path: the folder to write (`.ome.zarr` is the usual name).
        bands, shape, dtype, pixel_size: as for `write_tiled_tiff`.
        chunk: chunk side.
        compression: "zstd" (default), "zlib" (gzip in Zarr v3) or "none".
        levels: pyramid levels, the full size included; None: until the coarsest fits one
            chunk.
        version: OME-NGFF "0.4" (Zarr v2: read by most viewers today) or "0.5" (Zarr v3).
        overwrite: replace an existing `path` (the old one is removed only once the new one
            is in place).

    Returns:
        `path`. Memory: one row of chunks (`chunk x W`) and the band being regrouped.

    Raises:
        ConfigError: an unknown dtype, compression or version, or a chunk side not a
            multiple of 16.
        DataError: naming `path`, for bands that do not fit `shape` or `dtype`.
        RunError: `path` exists and `overwrite` is False, or is a file.
    """
    import zarr

    path = Path(path)
    dtype = _check_options(dtype, compression, ZARR_COMPRESSIONS, chunk)
    if version not in NGFF_VERSIONS:
        raise ConfigError(f"OME-NGFF version {version!r} is not one of "
                          f"{', '.join(NGFF_VERSIONS)}")
    if levels is not None and levels < 1:
        raise ConfigError(f"pyramid levels must be 1 or more, not {levels}")
    shapes = pyramid_shapes(shape, chunk, levels)
    zarr_format = 2 if version == "0.4" else 3
    with atomic_folder(path, overwrite=overwrite) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=zarr_format)
        options: dict[str, Any] = {"chunks": (chunk, chunk), "dtype": dtype, "fill_value": 0,
                                   "compressors": _zarr_compressor(compression, version)}
        if zarr_format == 3:
            options["dimension_names"] = ["y", "x"]
        arrays = [root.create_array(str(i), shape=s, **options) for i, s in enumerate(shapes)]
        for top, block in _row_blocks(bands, shape, dtype, chunk, path):
            arrays[0][top: top + block.shape[0]] = block
        for level in range(1, len(arrays)):
            before = arrays[level - 1]
            for top in range(0, shapes[level][0], chunk):
                rows = before[2 * top: 2 * (top + chunk): 2, ::2]
                arrays[level][top: top + rows.shape[0]] = rows
        root.attrs.update(_ngff_attributes(shapes, pixel_size, image_stem(path), version))
    return path


def _ngff_attributes(shapes: list[tuple[int, int]], pixel_size: PixelSize | None, name: str,
                     version: str) -> dict[str, Any]:
    unit = {"unit": "micrometer"} if pixel_size is not None else {}
    axes = [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
    base = (pixel_size.y, pixel_size.x) if pixel_size is not None else (1.0, 1.0)
    # level k is every 2**k-th row and column of level 0: its pixel i is level 0's 2**k i
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [base[0] * 2 ** level, base[1] * 2 ** level]}]}
        for level in range(len(shapes))]
    multiscale: dict[str, Any] = {"name": name, "axes": axes, "datasets": datasets,
                                  "type": "nearest",
                                  "metadata": {"description": "every second row and column "
                                               "of the level before"}}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscale}]}
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def write_tiled(path: Path | str, bands: Iterable[Any], shape: tuple[int, int],
                dtype: Any = np.uint16, *, pixel_size: PixelSize | None = None,
                overwrite: bool = False) -> Path:
    """`write_ome_zarr` for a target named `*.zarr`, else `write_tiled_tiff` (defaults of
    each); same arguments and errors. A target of another kind (`.png`) is a ConfigError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return write_ome_zarr(path, bands, shape, dtype, pixel_size=pixel_size,
                              overwrite=overwrite)
    if suffix in (".tif", ".tiff", ".btf", ".tf8"):
        return write_tiled_tiff(path, bands, shape, dtype, pixel_size=pixel_size,
                                overwrite=overwrite)
    raise ConfigError(f"{path.name}: large outputs are written as a tiled TIFF (.ome.tif) or "
                      "OME-Zarr (.ome.zarr)")


# -- small outputs -------------------------------------------------------------------------
def _prepare_labels(labels: Any, bits: int | None, path: Path, default: int | None
                    ) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"a label image is H x W, not an array of shape {labels.shape}", path)
    if labels.dtype.kind == "f":
        _as_labels(labels, np.dtype(np.uint32), path)  # whole numbers, 0 .. 2**32 - 1
    largest = int(labels.max()) if labels.size else 0
    smallest = int(labels.min()) if labels.size else 0
    dtype = label_dtype(largest, smallest, bits, path)
    if bits is None and default is not None and np.iinfo(dtype).bits < default:
        dtype = np.dtype(f"uint{default}")
    return _as_labels(labels, dtype, path)


def write_label_tiff(path: Path | str, labels: Any, pixel_size: PixelSize | None = None,
                     bits: int | None = None, compression: str = "zlib") -> Path:
    """Write an `H x W` label image (or mask: `bits=8`) as a compressed TIFF: 16-bit, or
    32-bit when an id exceeds 65,535, with the pixel size as an ImageJ calibration and
    resolution tags (16 and 8-bit: ImageJ cannot hold 32-bit integers) or as OME metadata
    and resolution tags (32-bit). Whole in memory: for large outputs use `write_tiled_tiff`.

    Raises:
        DataError: naming `path`, for negative, fractional or too large labels.
        ConfigError: `bits` not 8, 16 or 32, or an unknown compression.
    """
    import tifffile

    path = Path(path)
    if compression not in TIFF_COMPRESSIONS:
        raise ConfigError(f"compression {compression!r} is not one of "
                          f"{', '.join(TIFF_COMPRESSIONS)}")
    labels = _prepare_labels(labels, bits, path, default=16)
    imagej = labels.dtype != np.uint32
    options: dict[str, Any] = {"compression": None if compression == "none" else compression,
                               "photometric": "minisblack"}
    if imagej:
        options["imagej"] = True
        if pixel_size is not None:
            options |= {"resolution": (1 / pixel_size.x, 1 / pixel_size.y),
                        "metadata": {"unit": "um"}}
    else:
        options |= {"ome": True, "metadata": _ome_metadata(pixel_size),
                    **_resolution(pixel_size)}

    def write(fh: Any) -> None:
        tifffile.imwrite(_named(fh, path), labels, **options)

    return atomic_write(path, write)


def write_label_png(path: Path | str, labels: Any, pixel_size: PixelSize | None = None,
                    bits: int | None = None) -> Path:
    """Write an `H x W` label image or mask as a gray PNG: 8-bit when every value fits,
    else 16-bit (or `bits`), the pixel size as a pHYs chunk (pixels per metre, rounded).

    Raises:
        DataError: naming `path`, for negative or fractional labels, or labels past 65,535
            (a PNG holds 16 bits at most: write a TIFF) or past `bits`.
        ConfigError: `bits` not 8 or 16.
    """
    from PIL import Image

    path = Path(path)
    if bits not in (None, 8, 16):
        raise ConfigError(f"a PNG label image is 8 or 16-bit, not {bits}-bit")
    labels = _prepare_labels(labels, bits, path, default=None)
    if labels.dtype == np.uint32:
        raise DataError(f"holds labels up to {int(labels.max()):,}; a PNG holds 16 bits "
                        "(65,535) at most: write a TIFF (.tif) instead", path)
    image = Image.fromarray(labels)
    options: dict[str, Any] = {"format": "PNG"}
    if pixel_size is not None:
        options["dpi"] = (25_400 / pixel_size.x, 25_400 / pixel_size.y)
    return atomic_write(path, lambda fh: image.save(fh, **options))
