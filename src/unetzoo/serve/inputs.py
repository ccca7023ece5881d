"""Requests into images, by the rules `unetzoo predict` reads files with.

An uploaded file is read by `data.io.read_image` from its bytes, exactly as `predict` reads
the same file from disk: its format from the file name's extension (from its first bytes when
the name has none unetzoo reads), 8-bit / 255, 16-bit / 65535, float as stored, a declared
alpha dropped, gray and RGB converted to the model's channels.

An Open Inference Protocol tensor (`{"name": "image", "shape": [...], "datatype": ...,
"data": [...]}`) holds stored pixel values and is read by the same rule
(`data.io.image_from_pixels`):

- datatype `UINT8` (/ 255), `UINT16` (/ 65535) or `FP32` (as sent: [0, 1] is what the
  models were trained on, as for a float TIFF);
- shape `[H, W]` (one channel), `[H, W, C]` or `[C, H, W]`, with or without a leading batch
  axis `[N, ...]` of images of one size; the channel axis (at most 4 long) is the one of the
  first and last axes that can be channels. When both can (an image of at most 4 x 4 pixels)
  the request says which: `"parameters": {"layout": "HWC"}` (or `CHW`, `NHWC`, `NCHW`);
- `data` in row-major order, flat or nested as the shape.

Nothing here decodes more than the limits allow: the pixel count is checked from the file's
header or the tensor's shape before any pixel is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.io import IMAGE_EXTENSIONS, image_from_pixels, read_header
from ..errors import DataError
from .replies import RequestError

# Formats told by their first bytes, for uploads whose name has no extension unetzoo reads.
MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, ".png"), (b"\xff\xd8\xff", 0, ".jpg"), (b"II*\x00", 0, ".tif"),
    (b"MM\x00*", 0, ".tif"), (b"II+\x00", 0, ".tif"), (b"MM\x00+", 0, ".tif"),
    (b"GIF8", 0, ".gif"), (b"BM", 0, ".bmp"), (b"WEBP", 8, ".webp"),
    (b"\x93NUMPY", 0, ".npy"), (b"\x00\x00\x00\x0cjP  ", 0, ".jp2"),
    (b"\xff\x0a", 0, ".jxl"), (b"\x00\x00\x00\x0cJXL ", 0, ".jxl"))
DATATYPES: dict[str, type[np.generic]] = {"UINT8": np.uint8, "UINT16": np.uint16,
                                          "FP32": np.float32}
LAYOUTS = ("HW", "HWC", "CHW", "NHW", "NHWC", "NCHW")
INPUT_NAME = "image"
MAX_CHANNELS = 4


@dataclass(frozen=True)
class Upload:
    """An uploaded image file: a name unetzoo reads by its extension, and its bytes."""

    path: Path
    data: bytes


def _safe_name(filename: str | None) -> str:
    """The upload's base name, printable and short (it only names the image in messages and
    tells its format; nothing is written under it)."""
    name = Path((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[-100:].strip()
    return name if name not in ("", ".", "..") else "upload"


def upload(filename: str | None, data: bytes) -> Upload:
    """An upload whose name has an extension unetzoo reads: the client's when it has one,
    else told by the first bytes.

    Raises:
        RequestError: 400 for an empty body; 415 when neither the name nor the bytes say an
            image format unetzoo reads.
    """
    if not data:
        raise RequestError(400, "no image: the upload is empty (0 bytes)")
    path = Path(_safe_name(filename))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return Upload(path, data)
    for magic, offset, suffix in MAGIC:
        if data[offset: offset + len(magic)] == magic:
            return Upload(path.with_name(path.name + suffix), data)
    shown = f"{path.suffix.lower()}" if path.suffix else "no extension"
    raise RequestError(415, f"{path.name}: not an image unetzoo reads ({shown}, and its first "
                            "bytes are no image format's); send PNG, TIFF, JPEG, BMP, GIF, "
                            "WebP, JPEG 2000, JPEG XL or .npy")


def check_upload(item: Upload, max_pixels: int) -> tuple[int, int]:
    """(height, width) from the upload's header, without decoding its pixels.

    Raises:
        RequestError: 413 above `max_pixels`; 400 for a header that cannot be read.
    """
    try:
        header = read_header(item.path, item.data)
    except DataError as exc:
        raise RequestError(400, str(exc)) from exc
    check_pixels(header.height, header.width, max_pixels, item.path.name)
    return header.height, header.width


def check_pixels(height: int, width: int, max_pixels: int, what: str) -> None:
    """Raise 413 when an image of `height x width` is over the server's limit."""
    if height * width > max_pixels:
        raise RequestError(413, f"{what}: {width} x {height} is {height * width:,} pixels; "
                                f"this server takes at most {max_pixels:,} per request "
                                "(serve --max-pixels)")


def _layout(shape: list[int], given: Any) -> str:
    """The axes of a tensor of `shape` (see the module docstring)."""
    rank = len(shape)
    if given is not None:
        if given not in LAYOUTS or len(given) != rank:
            fitting = [la for la in LAYOUTS if len(la) == rank]
            raise RequestError(400, f"parameters.layout {given!r} does not fit shape {shape}; "
                                    f"use one of {', '.join(fitting)}")
        return str(given)
    if rank == 2:
        return "HW"
    batch = "N" if rank == 4 else ""
    first, last = shape[-3], shape[-1]
    first_ok, last_ok = first <= MAX_CHANNELS, last <= MAX_CHANNELS
    if last_ok and not first_ok:
        return batch + "HWC"
    if first_ok and not last_ok:
        return batch + "CHW"
    if not first_ok:
        raise RequestError(400, f"shape {shape}: neither axis {rank - 3} ({first}) nor the "
                                f"last ({last}) can be channels (at most {MAX_CHANNELS}); "
                                "send [H, W], [H, W, C] or [C, H, W], optionally with a "
                                "leading batch axis")
    raise RequestError(400, f"shape {shape} reads as {batch}HWC and as {batch}CHW; say which: "
                            f'"parameters": {{"layout": "{batch}HWC"}}')


def tensor_pixels(item: Any, max_pixels: int) -> tuple[list[np.ndarray], bool]:
    """The stored pixels (`H x W x C`, in the tensor's datatype) of each image of an Open
    Inference Protocol input tensor (see the module docstring), and whether the tensor has a
    batch axis (the labels then have one too).

    Args:
        item: one element of the request's `inputs`.
        max_pixels: the most pixels (over all images of the tensor) taken.

    Raises:
        RequestError: 400 for a malformed tensor (missing fields, an unknown input name or
            datatype, data that does not fit the shape or the datatype's range), 413 over
            `max_pixels`.
    """
    if not isinstance(item, dict):
        raise RequestError(400, "each of inputs is an object {name, shape, datatype, data}")
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in item]
    if missing:
        raise RequestError(400, f"input lacks {', '.join(missing)}: each of inputs is an object "
                                "{name, shape, datatype, data}")
    if item["name"] != INPUT_NAME:
        raise RequestError(400, f"unknown input {item['name']!r}: the model takes one input, "
                                f"{INPUT_NAME!r}")
    shape = item["shape"]
    if not (isinstance(shape, list) and 2 <= len(shape) <= 4
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
        raise RequestError(400, f"shape {shape!r}: give 2 to 4 positive whole numbers, "
                                "[H, W], [H, W, C], [C, H, W] or [N, ...]")
    datatype = item["datatype"]
    if datatype not in DATATYPES:
        raise RequestError(400, f"datatype {datatype!r} is not taken: send "
                                f"{', '.join(DATATYPES)}")
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, "input parameters must be an object")
    if parameters.get("binary_data_size") is not None:
        raise RequestError(400, "binary tensor data is not supported here: send the data as "
                                "JSON numbers")
    layout = _layout(shape, parameters.get("layout"))
    axes = dict(zip(layout, shape, strict=True))
    check_pixels(axes["H"], axes["W"] * axes.get("N", 1), max_pixels,
                 f"input {INPUT_NAME!r}")
    if axes.get("C", 1) > MAX_CHANNELS:
        raise RequestError(400, f"shape {shape} with layout {layout}: {axes['C']} channels; "
                                f"at most {MAX_CHANNELS}")
    values = _values(item["data"], shape, datatype)
    array = values.reshape(shape)
    batched = "N" in layout
    if "C" not in layout:
        array = array[..., None]
        layout += "C"
    if not batched:
        array = array[None]
        layout = "N" + layout
    array = array.transpose([layout.index(a) for a in "NHWC"])
    return list(array), batched


def _values(data: Any, shape: list[int], datatype: str) -> np.ndarray:
    """`data` as a flat array of `datatype`, checked against the shape and the datatype."""
    if not isinstance(data, list):
        raise RequestError(400, "data must be a JSON array of numbers (flat or nested)")
    try:
        values = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise RequestError(400, f"data is not an array of numbers of one shape ({exc})") from exc
    count = math.prod(shape)
    if values.ndim > 1 and list(values.shape) != shape:
        raise RequestError(400, f"data is nested as {list(values.shape)}, not as the shape "
                                f"{shape}")
    if values.size != count:
        raise RequestError(400, f"data holds {values.size} values; shape {shape} needs {count}")
    kind = values.dtype.kind
    dtype = DATATYPES[datatype]
    if kind not in "iuf" or (kind == "f" and datatype != "FP32"):
        what = {"b": "true/false", "U": "text", "O": "mixed values"}.get(kind, "non-integers")
        raise RequestError(400, f"data holds {what}; {datatype} data are "
                                f"{'numbers' if datatype == 'FP32' else 'whole numbers'}")
    if datatype == "FP32":
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise RequestError(400, "FP32 data holds values that are not finite (NaN, "
                                    "Infinity) or beyond float32")
        return values.ravel()
    info = np.iinfo(dtype)
    low, high = int(values.min()), int(values.max())
    if low < info.min or high > info.max:
        raise RequestError(400, f"{datatype} data must lie in {info.min}..{info.max}; found "
                                f"{low}..{high}")
    return values.astype(dtype).ravel()


def tensor_image(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    """One image of a tensor (`H x W x C` stored values) as `read_image` gives a file's:
    float32 `H x W x C` in [0, 1] (integers by their datatype's maximum), converted to
    `channels`.

    Raises:
        RequestError: 400 for channels that do not fit the model.
    """
    try:
        return image_from_pixels(pixels, False, channels, Path(f"input {INPUT_NAME!r}"))
    except DataError as exc:
        raise RequestError(400, str(exc)) from exc
