"""The plugin's loop without Qt: predicting layer data, writing corrections as a dataset,
stopping a fine-tuning, exporting."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.napari.conftest import nuclei_image
from unetzoo.data.io import read_mask
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import ConfigError, DataError, RunError
from unetzoo.napari.loop import (
    Cancelled,
    Correction,
    StopSwitch,
    export_model,
    fine_tune,
    forward_passes,
    open_model,
    plane_axes,
    predict_layer,
    run_folder,
    safe_name,
    write_corrections,
)
from unetzoo.runtime import Runtime

TORCH = InferenceOptions(Runtime.resolve(backend="torch"))


def test_plane_axes_follow_napari() -> None:
    assert plane_axes((5, 40, 30), rgb=False) == ((5,), (40, 30))
    assert plane_axes((40, 30, 3), rgb=True) == ((), (40, 30))
    assert plane_axes((2, 40, 30, 3), rgb=True) == ((2,), (40, 30))
    with pytest.raises(DataError, match="no H x W plane"):
        plane_axes((40,), rgb=False)


def test_a_plane_gives_what_the_predictor_gives(tiny_model) -> None:
    model = open_model(str(tiny_model()), TORCH)
    image, _ = nuclei_image()
    labels = predict_layer(model.predictor, image, rgb=True)
    expected = Predictor.open(model.reference.path, TORCH).labels(image)
    assert labels.dtype == np.uint8 and labels.shape == (64, 64)
    np.testing.assert_array_equal(labels, expected)
    rgba = np.concatenate([image, np.full((64, 64, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(predict_layer(model.predictor, rgba, rgb=True), expected)


def test_forward_passes_count_every_tile_and_progress_ends_at_the_total(tiny_model) -> None:
    """A 70 x 90 plane in 32-pixel tiles (overlap 0.25: 3 x 4 tiles, batches of 4): 3
    passes per plane, 2 planes; the progress callback hears each and ends at 6 / 6."""
    model = open_model(str(tiny_model(img_size=32, channels=1)), TORCH)
    stack = np.random.default_rng(0).integers(0, 255, (2, 70, 90), dtype=np.uint8)
    assert forward_passes(model.predictor, 70, 90) == 3
    heard: list[tuple[int, int]] = []
    labels = predict_layer(model.predictor, stack, rgb=False,
                           progress=lambda done, total: heard.append((done, total)))
    assert labels.shape == (2, 70, 90)
    assert [d for d, _ in heard[:-1]] == [1, 2, 3, 4, 5, 6] and heard[-1] == (6, 6)
    assert {t for _, t in heard} == {6}


def test_instance_ids_are_unique_across_planes(tiny_model) -> None:
    model = open_model(str(tiny_model("instance")), TORCH)
    image, _ = nuclei_image()
    stack = np.stack([image, image])  # 2 x H x W x 3
    labels = predict_layer(model.predictor, stack, rgb=True)
    single = predict_layer(model.predictor, image, rgb=True)
    assert labels.dtype == np.int32 and labels.shape == (2, 64, 64)
    count = int(single.max())
    assert count >= 1
    np.testing.assert_array_equal(labels[0], single)
    np.testing.assert_array_equal(labels[1], np.where(single > 0, single + count, 0))


def test_a_prediction_stops_before_its_next_forward_pass(tiny_model) -> None:
    model = open_model(str(tiny_model(img_size=32, channels=1)), TORCH)
    with pytest.raises(Cancelled):
        predict_layer(model.predictor, np.zeros((70, 90), np.uint8), rgb=False,
                      should_stop=lambda: True)
    assert model.predictor.on_forward is None  # the predictor is left as it was


def test_corrections_become_a_binary_dataset(tiny_model, tmp_path: Path) -> None:
    """A gray uint16 layer for a 3-channel model: replicated, dtype kept; labels > 0 are
    written as 255 in an 8-bit PNG; every pair in train."""
    model = open_model(str(tiny_model()), TORCH)
    gray = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)
    labels = np.zeros((40, 30), np.uint8)
    labels[5:10, 5:10] = 1
    labels[20:25, 5:10] = 7  # any non-zero label is foreground for a binary model
    written = write_corrections([Correction("cells 1/a", gray, False, labels)],
                                tmp_path / "data", model)
    assert written.names == ("cells_1_a",)
    image = tifffile.imread(written.folder / "images" / "cells_1_a.tif")
    assert image.dtype == np.uint16 and image.shape == (40, 30, 3)
    np.testing.assert_array_equal(image[..., 2], gray)
    mask = np.asarray(Image.open(written.folder / "masks" / "cells_1_a.png"))
    np.testing.assert_array_equal(mask, (labels > 0).astype(np.uint8) * 255)
    rows = list(csv.DictReader(written.csvfile.open()))
    assert rows == [{"image": "images/cells_1_a.tif", "mask": "masks/cells_1_a.png",
                     "split": "train"}]


def test_instance_corrections_are_label_tiffs_plane_by_plane(tiny_model, tmp_path: Path
                                                             ) -> None:
    model = open_model(str(tiny_model("instance", channels=1)), TORCH)
    stack = np.zeros((2, 20, 20), np.uint8)
    labels = np.zeros((2, 20, 20), np.int32)
    labels[0, 2:5, 2:5], labels[1, 10:15, 10:15] = 3, 700
    written = write_corrections([Correction("z", stack, False, labels)], tmp_path / "d", model)
    assert written.names == ("z_p0", "z_p1")
    second = tifffile.imread(written.folder / "masks" / "z_p1.tif")
    assert second.dtype == np.uint16
    np.testing.assert_array_equal(second, labels[1])
    np.testing.assert_array_equal(read_mask(written.folder / "masks" / "z_p0.tif"), labels[0])


def test_corrections_the_model_cannot_learn_are_refused(tiny_model, tmp_path: Path) -> None:
    multiclass = open_model(str(tiny_model("multiclass", classes=3)), TORCH)
    image = np.zeros((20, 20, 3), np.uint8)
    labels = np.zeros((20, 20), np.uint8)
    labels[0, 0] = 3
    with pytest.raises(DataError, match="holds label 3, but the model has 3 classes"):
        write_corrections([Correction("a", image, True, labels)], tmp_path / "x", multiclass)
    with pytest.raises(DataError, match="has shape \\(10, 20\\), its image 'a' \\(20, 20\\)"):
        write_corrections([Correction("a", image, True, labels[:10])], tmp_path / "y",
                          multiclass)
    with pytest.raises(DataError, match="64-bit integers"):
        write_corrections([Correction("a", image.astype(np.int64), True, labels * 0)],
                          tmp_path / "z", multiclass)
    multilabel = open_model(str(tiny_model("multilabel", classes=2)), TORCH)
    with pytest.raises(ConfigError, match="multilabel"):
        write_corrections([Correction("a", image, True, labels * 0)], tmp_path / "w",
                          multilabel)
    with pytest.raises(ConfigError, match="nothing to fine-tune on"):
        write_corrections([], tmp_path / "v", multiclass)
    assert not any(p.name in "xyzwv" for p in tmp_path.iterdir())  # nothing left behind


def test_run_folders_are_new_and_named_after_the_image(tmp_path: Path) -> None:
    first = run_folder(tmp_path, "my cells.tif")
    assert first.parent == tmp_path and first.name.startswith("my_cells.tif-")
    first.mkdir()
    second = run_folder(tmp_path, "my cells.tif")
    assert second != first and not second.exists()
    assert safe_name("../..") == "image"


def test_a_stop_asked_before_training_stops_it_at_once_and_keeps_the_run(
        tiny_model, tmp_path: Path) -> None:
    model = open_model(str(tiny_model()), TORCH)
    image, mask = nuclei_image(size=32)
    written = write_corrections([Correction("a", image, True, mask > 0)], tmp_path / "data",
                                model)
    switch = StopSwitch()
    switch.request()
    result = fine_tune(model, written, tmp_path / "run", 5.0, switch, precision="fp32",
                       report=False)
    assert result.cancelled and result.best is None
    assert (tmp_path / "run" / "models" / "epoch_last.pt").is_file()  # resumable
    assert not (tmp_path / "run" / "models" / "best.pt").exists()


def test_export_writes_a_model_folder_and_a_copy_of_the_run(tiny_run: Path,
                                                            tmp_path: Path) -> None:
    model = open_model(str(tiny_run), TORCH)
    folder = export_model(model, "folder", tmp_path / "folder", ["A. Author"], "MIT")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    card = (folder / "README.md").read_text()
    assert "A. Author" in card and "MIT" in card
    copy = export_model(model, "run", tmp_path / "copy")
    assert (copy / "models" / "best.pt").read_bytes() == \
        (tiny_run / "models" / "best.pt").read_bytes()
    with pytest.raises(RunError, match="not a training run's model"):
        export_model(open_model(str(folder), TORCH), "run", tmp_path / "again")
    with pytest.raises(ConfigError, match="unknown export"):
        export_model(model, "zip", tmp_path / "z")
