"""Objects of a label image in the files other tools open: ImageJ / Fiji ROI sets (`.zip`,
the RoiManager's format, written with the `roifile` package), QuPath GeoJSON (a
FeatureCollection of detections, `File > Import objects`), and a table of per-object
measurements (CSV).

Outlines are the 0.5 iso-contour of each object's mask (`skimage.measure.find_contours`) in
the pixel-corner convention both tools use (pixel (r, c) covers x in [c, c+1], y in
[r, r+1]): the outline passes half way between an object's pixel centres and its
neighbours', so filling it by pixel centres gives the object's pixels back. An object in
several pieces is outlined by its largest piece (the others are counted in
`Outlines.pieces`); holes are not drawn.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write, atomic_write_text

# Per-object measurements: (column, regionprops property, unit kind: "px" lengths, "px2"
# areas, "" none); every one is in pixels, and also in micrometres when the pixel size is known
MEASUREMENTS: tuple[tuple[str, str, str], ...] = (
    ("area", "area", "px2"), ("perimeter", "perimeter", "px"),
    ("major_axis_length", "axis_major_length", "px"),
    ("minor_axis_length", "axis_minor_length", "px"),
    ("eccentricity", "eccentricity", ""), ("solidity", "solidity", ""),
    ("orientation", "orientation", ""),
)


@dataclass(frozen=True)
class Outlines:
    """Each object's outline: `ids[i]`'s polygon `polygons[i]` (`N x 2`, x then y, in pixels,
    pixel-corner convention, closed: last point = first); `pieces` counts the objects drawn
    by the largest of several pieces."""

    ids: np.ndarray
    polygons: list[np.ndarray]
    pieces: int = 0


def _check(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (
            labels.size and labels.min() < 0):
        raise DataError(f"expected a 2-D label image of non-negative integers, got "
                        f"{labels.dtype} {labels.shape}", name)
    return labels


def outlines(labels: np.ndarray, name: str = "labels") -> Outlines:
    """The outline of every object of `labels` (`H x W`, 0 = background), in id order.

    Raises:
        DataError: not a 2-D array of non-negative integers.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    labels = _check(labels, name)
    ids, polygons, pieces = [], [], 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        padded = np.pad(mask, 1).astype(np.float32)
        parts, count = ndimage.label(padded > 0)
        if count > 1:
            pieces += 1
            sizes = np.bincount(parts.ravel())[1:]
            padded = (parts == 1 + int(np.argmax(sizes))).astype(np.float32)
        contours = find_contours(padded, 0.5)
        if not contours:
            continue
        contour = max(contours, key=len)  # the outer boundary (holes are shorter, inside)
        # (row, col) in the padded crop, pixel centres -> (x, y), pixel corners, whole image
        y = contour[:, 0] - 1 + box[0].start + 0.5
        x = contour[:, 1] - 1 + box[1].start + 0.5
        polygon = np.stack([x, y], axis=1)
        if not np.array_equal(polygon[0], polygon[-1]):
            polygon = np.vstack([polygon, polygon[:1]])
        ids.append(index)
        polygons.append(polygon.astype(np.float64))
    return Outlines(np.asarray(ids, dtype=np.int64), polygons, pieces)


def object_table(labels: np.ndarray, image: np.ndarray | None = None,
                 pixel_size: tuple[float, float] | None = None,
                 channel_names: Sequence[str] | None = None,
                 name: str = "labels") -> list[dict[str, Any]]:
    """One row per object: id, centroid (x, y in pixels, pixel-corner convention: the
    centre of pixel (r, c) is (c + 0.5, r + 0.5)), bounding box (x0, y0, x1, y1, end
    exclusive), the `MEASUREMENTS` in pixels (and micrometres with `pixel_size` = (x, y)
    in µm), and, with `image` (`H x W x C` as read), the mean intensity per channel.

    Raises:
        DataError: not a label image; an image of another size.
    """
    from skimage.measure import regionprops

    labels = _check(labels, name)
    if image is not None:
        image = image[..., None] if image.ndim == 2 else image
        if image.shape[:2] != labels.shape:
            raise DataError(f"image of {image.shape[0]} x {image.shape[1]} pixels for labels "
                            f"of {labels.shape[0]} x {labels.shape[1]}", name)
    channels = image.shape[2] if image is not None else 0
    names = list(channel_names or [f"channel{c}" for c in range(channels)])
    scale = (pixel_size[0] * pixel_size[1]) ** 0.5 if pixel_size else None
    rows = []
    for region in regionprops(labels, intensity_image=image):
        r0, c0, r1, c1 = region.bbox
        cy, cx = region.centroid
        row: dict[str, Any] = {"id": int(region.label), "centroid_x": cx + 0.5,
                               "centroid_y": cy + 0.5, "bbox_x0": c0, "bbox_y0": r0,
                               "bbox_x1": c1, "bbox_y1": r1}
        for column, prop, unit in MEASUREMENTS:
            value = float(getattr(region, prop))
            row[column] = value
            if scale is not None and unit:
                row[f"{column}_um{'2' if unit == 'px2' else ''}"] = \
                    value * (scale**2 if unit == "px2" else scale)
        if image is not None:
            means = np.atleast_1d(region.intensity_mean)
            for channel, value in zip(names, means, strict=True):
                row[f"mean_{channel}"] = float(value)
        rows.append(row)
    return rows


def write_table(path: Path | str, rows: list[dict[str, Any]]) -> Path:
    """The object table as CSV (atomically); a header-only file when there are none."""
    columns = list(rows[0]) if rows else ["id", "centroid_x", "centroid_y", "bbox_x0",
                                          "bbox_y0", "bbox_x1", "bbox_y1"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    return atomic_write_text(path, out.getvalue())


def write_imagej_rois(path: Path | str, shapes: Outlines) -> Path:
    """An ImageJ / Fiji ROI set: a `.zip` of one freehand ROI (its sub-pixel outline) per
    object, named
    `<id>-<y>-<x>` (the object's id, then the top and left of its outline), which
    Fiji's ROI Manager opens (`File > Open`, or dropping the file).

    Raises:
        ConfigError: the roifile package is missing (a dependency of unetzoo).
    """
    from roifile import ImagejRoi

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            for index, polygon in zip(shapes.ids, shapes.polygons, strict=True):
                top, left = int(polygon[:, 1].min()), int(polygon[:, 0].min())
                roi_name = f"{int(index):05d}-{top:05d}-{left:05d}"
                roi = ImagejRoi.frompoints(polygon[:-1], name=roi_name)
                archive.writestr(f"{roi_name}.roi", roi.tobytes())
    return atomic_write(path, write)


def write_geojson(path: Path | str, shapes: Outlines, class_name: str = "Nucleus",
                  color: tuple[int, int, int] = (255, 80, 80), object_type: str = "detection",
                  measurements: list[dict[str, Any]] | None = None) -> Path:
    """A QuPath GeoJSON FeatureCollection: one Polygon per object (x, y in pixels of the full
    image), `objectType` `detection` (or `annotation`, editable in QuPath) classified as
    `class_name`, with the object's id and, when given, its row of `object_table` as
    measurements. QuPath: `File > Import objects`, or drop the file on the image."""
    by_id = {row["id"]: row for row in measurements or []}
    features = []
    for index, polygon in zip(shapes.ids, shapes.polygons, strict=True):
        properties: dict[str, Any] = {
            "objectType": object_type, "name": f"{class_name} {int(index)}",
            "classification": {"name": class_name, "color": list(color)}}
        row = by_id.get(int(index))
        if row:
            properties["measurements"] = {k: v for k, v in row.items()
                                          if isinstance(v, (int, float)) and k != "id"}
        features.append({"type": "Feature", "id": f"unetzoo-{int(index)}",
                         "geometry": {"type": "Polygon", "coordinates": [
                             [[round(float(x), 3), round(float(y), 3)] for x, y in polygon]]},
                         "properties": properties})
    text = json.dumps({"type": "FeatureCollection", "features": features}) + "\n"
    return atomic_write_text(path, text)
