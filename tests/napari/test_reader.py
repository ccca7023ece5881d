"""The plugin's reader: label images as labels layers with their pixel size, other 2D images
as image layers, runs (the folder, its config.yaml, its checkpoints) as their first test
image, its mask and the run's prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from unetzoo.data.large import PixelSize
from unetzoo.data.writers import write_label_png, write_label_tiff
from unetzoo.napari.reader import get_reader


def _read(path: Path) -> list:
    reader = get_reader(str(path))
    assert reader is not None, f"unetzoo does not read {path}"
    return reader(str(path))


def test_a_label_tiff_is_a_labels_layer_with_its_pixel_size(tmp_path: Path) -> None:
    labels = np.zeros((30, 40), np.uint16)
    labels[2:6, 3:9], labels[10:20, 10:12] = 1, 2
    path = write_label_tiff(tmp_path / "cells.tif", labels, PixelSize(0.25, 0.5))
    [(data, options, kind)] = _read(path)
    assert kind == "labels" and options["name"] == "cells labels"
    np.testing.assert_array_equal(data, labels)
    np.testing.assert_allclose(options["scale"], (0.5, 0.25), rtol=1e-4)
    assert "object ids 0..2" in options["metadata"]["read_as"]


def test_a_mask_png_is_read_as_0_and_1_and_a_palette_png_as_classes(tmp_path: Path) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 5:10] = 255
    [(data, options, kind)] = _read(write_label_png(tmp_path / "m.png", mask, bits=8))
    assert kind == "labels" and options["name"] == "m labels" and "scale" not in options
    np.testing.assert_array_equal(data, mask // 255)
    classes = np.zeros((20, 20), np.uint8)
    classes[:, 10:] = 2
    palette = Image.fromarray(classes, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "c.png")
    [(data, _, kind)] = _read(tmp_path / "c.png")
    assert kind == "labels"
    np.testing.assert_array_equal(data, classes)


def test_other_images_are_images_and_other_files_are_left_to_napari(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    [(data, options, kind)] = _read(tmp_path / "photo.png")
    assert kind == "image" and options["rgb"] and options["name"] == "photo"
    np.testing.assert_array_equal(data, rgb)
    gaps = np.zeros((20, 20), np.uint16)
    gaps[0, 0], gaps[5, 5] = 1, 5  # ids 2..4 missing: not labels unetzoo writes
    tifffile.imwrite(tmp_path / "gaps.tif", gaps)
    assert _read(tmp_path / "gaps.tif")[0][2] == "image"
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 20, 20), np.uint16))
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    (tmp_path / "folder").mkdir()
    (tmp_path / "model.pt").write_bytes(b"not a run's")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    for other in ("stack.tif", "photo.jpg", "folder", "missing.png", "model.pt", "config.yaml"):
        assert get_reader(str(tmp_path / other)) is None, other


def test_a_run_folder_opens_as_image_truth_and_prediction(tiny_run: Path) -> None:
    from unetzoo.data.io import read_array
    from unetzoo.engine.inference.predictor import Predictor

    layers = _read(tiny_run)
    for other in (tiny_run / "config.yaml", tiny_run / "models" / "best.pt"):
        assert [(o["name"], kind) for _, o, kind in _read(other)] == \
            [(o["name"], kind) for _, o, kind in layers]
    assert [kind for _, _, kind in layers] == ["image", "labels", "labels"]
    (image, image_options, _), (truth, truth_options, _), (labels, options, _) = layers
    name = f"{tiny_run.name}: img_003"  # the test image of the split
    assert image_options["name"] == name and image_options["metadata"]["split"] == "test"
    assert truth_options["name"] == f"{name} truth"
    assert options["name"] == f"{name} labels"
    assert options["metadata"]["unetzoo"]["model"] == str(tiny_run)
    source = Path(image_options["metadata"]["source"])
    np.testing.assert_array_equal(truth, read_array(source.parent.parent / "masks" /
                                                    source.name) > 0)
    np.testing.assert_array_equal(labels, Predictor.open(tiny_run).labels(image))
