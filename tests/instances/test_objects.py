"""Objects of a label image as Fiji ROI sets, QuPath GeoJSON and per-object tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from unetzoo.errors import DataError
from unetzoo.instances.objects import (
    object_table,
    outlines,
    write_geojson,
    write_imagej_rois,
    write_table,
)


def labels_fixture() -> np.ndarray:
    """A disc, a square touching it, an L shape, a one-pixel object and id 9 (ids not
    consecutive), on 40 x 50."""
    labels = np.zeros((40, 50), np.uint16)
    yy, xx = np.mgrid[:40, :50]
    labels[(yy - 12) ** 2 + (xx - 12) ** 2 <= 49] = 3
    labels[5:20, 19:30] = 4  # touches the disc
    labels[25:35, 5:8] = 9
    labels[32:35, 5:15] = 9
    labels[30, 40] = 7
    return labels


def filled(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre (c + 0.5, r + 0.5) lies inside `polygon` (x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    return Polygon(polygon).contains_points(centres).reshape(shape)


def test_outlines_filled_by_pixel_centres_give_the_objects_back() -> None:
    labels = labels_fixture()
    shapes = outlines(labels)
    assert shapes.ids.tolist() == [3, 4, 7, 9] and shapes.pieces == 0
    for index, polygon in zip(shapes.ids, shapes.polygons, strict=True):
        assert np.array_equal(polygon[0], polygon[-1])
        assert np.array_equal(filled(polygon, labels.shape), labels == index), index


def test_an_object_in_pieces_is_outlined_by_its_largest() -> None:
    labels = np.zeros((20, 20), np.uint8)
    labels[2:8, 2:8] = 1
    labels[15:17, 15:17] = 1
    shapes = outlines(labels)
    assert shapes.pieces == 1
    assert filled(shapes.polygons[0], labels.shape).sum() == 36


def test_imagej_roi_sets_open_in_roifile(tmp_path: Path) -> None:
    from roifile import roiread

    labels = labels_fixture()
    shapes = outlines(labels)
    path = write_imagej_rois(tmp_path / "rois.zip", shapes)
    rois = roiread(path)
    assert [r.name for r in rois] == [f"{i:05d}-{int(p[:, 1].min()):05d}-"
                                      f"{int(p[:, 0].min()):05d}"
                                      for i, p in zip(shapes.ids, shapes.polygons, strict=True)]
    for roi, polygon in zip(rois, shapes.polygons, strict=True):
        assert np.allclose(roi.coordinates(), polygon[:-1], atol=1e-3)


def test_qupath_geojson(tmp_path: Path) -> None:
    labels = labels_fixture()
    rows = object_table(labels)
    path = write_geojson(tmp_path / "objects.geojson", outlines(labels), "Nucleus",
                         measurements=rows)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 4
    first = data["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    ring = first["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["classification"]["name"] == "Nucleus"
    assert first["properties"]["measurements"]["area"] == float((labels == 3).sum())


def test_object_table_measures_each_object(tmp_path: Path) -> None:
    labels = labels_fixture()
    image = np.zeros((40, 50, 2), np.float32)
    image[..., 0] = 0.5
    image[labels == 4, 1] = 1.0
    rows = object_table(labels, image, pixel_size=(0.5, 0.5), channel_names=["dapi", "gfp"])
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [3, 4, 7, 9]
    assert by_id[4]["area"] == 15 * 11 and by_id[4]["area_um2"] == pytest.approx(15 * 11 / 4)
    assert (by_id[4]["bbox_x0"], by_id[4]["bbox_y0"], by_id[4]["bbox_x1"],
            by_id[4]["bbox_y1"]) == (19, 5, 30, 20)
    assert by_id[4]["centroid_x"] == pytest.approx(24 + 0.5)  # columns 19..29
    assert by_id[7]["centroid_y"] == pytest.approx(30.5)
    assert by_id[4]["mean_gfp"] == 1.0 and by_id[3]["mean_gfp"] == 0.0
    assert by_id[3]["mean_dapi"] == pytest.approx(0.5)
    path = write_table(tmp_path / "objects.csv", rows)
    with path.open() as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == 4 and read[0]["id"] == "3"


def test_bad_label_images_are_refused() -> None:
    with pytest.raises(DataError, match="a 2-D label image of non-negative integers"):
        outlines(np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match="image of 4 x 4 pixels for labels of 5 x 5"):
        object_table(np.zeros((5, 5), np.uint8), np.zeros((4, 4), np.float32))
