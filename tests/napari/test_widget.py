"""The dock widget in a headless viewer (napari's `make_napari_viewer`, pytest-qt,
`QT_QPA_PLATFORM=offscreen`): predict, correct, fine-tune, export; cancel; the manifest.

Skipped where napari, pytest-qt or a Qt binding is not installed (`pip install
'unetzoo[napari]' pytest-qt`) or Qt's libraries cannot load.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

napari = pytest.importorskip("napari", reason="napari is not installed: pip install "
                             "'unetzoo[napari]'")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")
pytest.importorskip("qtpy.QtWidgets", reason="no Qt binding (PyQt6) or Qt libraries")

import unetzoo.engine.training.setup  # noqa: E402, F401  (imported outside the time budget)
from tests.napari.conftest import nuclei_image  # noqa: E402
from unetzoo.artefacts.checkpoint import read_checkpoint_file  # noqa: E402
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor  # noqa: E402
from unetzoo.runtime import Runtime  # noqa: E402

TORCH = InferenceOptions(Runtime.resolve(backend="torch"))


@pytest.fixture(autouse=True, scope="session")
def _display(gl_display: str) -> str:
    """The display is there before pytest-qt starts the Qt application (session fixtures
    that are autouse come first)."""
    return gl_display
WAIT_MS = 180_000  # a loaded 2-core machine; a budget of 0.05 min is set below


def _widget(make_napari_viewer, model: Path):
    from unetzoo.napari.widget import UnetzooWidget

    viewer = make_napari_viewer()
    widget = UnetzooWidget(viewer)
    viewer.window.add_dock_widget(widget, name="unetzoo")
    widget.options = TORCH  # no OpenVINO conversion in tests
    widget.train_options = {"precision": "fp32"}
    widget.model_box.setCurrentText(str(model))
    return viewer, widget


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def test_predict_correct_fine_tune_export(make_napari_viewer, qtbot, tiny_model,
                                          tmp_path: Path) -> None:
    model = tiny_model()
    viewer, widget = _widget(make_napari_viewer, model)
    image, _ = nuclei_image(size=48)
    viewer.add_image(image, name="cells", scale=(0.5, 0.5))
    assert widget.image_box.currentText() == "cells"

    assert widget.predict() is not None
    _wait(qtbot, widget)
    labels = viewer.layers["cells labels"]
    np.testing.assert_array_equal(labels.data, Predictor.open(model, TORCH).labels(image))
    assert tuple(labels.scale) == (0.5, 0.5)
    assert widget.progress.value() == widget.progress.maximum()
    assert widget.pairs_list.count() == 1 and widget.pairs_list.item(0).text() == "cells"

    # the correction with napari's own tools: the untrained model's foreground erased
    # (fill with 0), a square object painted
    labels.fill((0, 0), 0)
    labels.paint_polygon([[4, 4], [4, 20], [20, 20], [20, 4]], 1)
    corrected = np.array(labels.data)
    assert corrected[10, 10] == 1 and 0 < corrected.sum() < corrected.size

    widget.minutes.setValue(0.05)
    widget.out_root.setText(str(tmp_path / "runs"))
    assert widget.fine_tune() is not None
    _wait(qtbot, widget)
    run = widget.last_run
    assert run is not None and run.parent == tmp_path / "runs", widget.status.text()
    assert run.name.startswith("cells-") and (run / "models" / "best.pt").is_file()
    mask = np.asarray(Image.open(Path(f"{run}-corrections") / "masks" / "cells.png"))
    np.testing.assert_array_equal(mask, (corrected > 0) * 255)  # what was trained on
    assert widget.model_box.currentText() == str(run)
    tuned = read_checkpoint_file(run / "models" / "best.pt")
    first = read_checkpoint_file(model)
    assert any(not np.array_equal(tuned.state_dict[k], first.state_dict[k])
               for k in first.state_dict)  # trained from the model's weights on
    after = viewer.layers["cells labels"].data
    np.testing.assert_array_equal(after, Predictor.open(run, TORCH).labels(image))
    assert not np.array_equal(after, corrected)  # the layer holds the new prediction
    assert str(run) in widget.status.text()

    assert widget.export_to(tmp_path / "exported", "folder") is not None
    _wait(qtbot, widget)
    assert (tmp_path / "exported" / "model.safetensors").is_file(), widget.status.text()


def test_cancel_stops_fine_tuning_and_keeps_the_model(make_napari_viewer, qtbot, tiny_model,
                                                      tmp_path: Path) -> None:
    model = tiny_model()
    viewer, widget = _widget(make_napari_viewer, model)
    image, mask = nuclei_image(size=32)
    viewer.add_image(image, name="cells")
    viewer.add_labels((mask > 0).astype(np.uint8), name="cells labels")
    widget.minutes.setValue(30)
    widget.out_root.setText(str(tmp_path))
    assert widget.fine_tune() is not None
    widget.cancel()
    _wait(qtbot, widget)
    assert "cancelled" in widget.status.text(), widget.status.text()
    assert widget.model_box.currentText() == str(model)
    assert (widget.last_run / "models" / "epoch_last.pt").is_file()  # resumable


def test_errors_are_one_line_in_the_status(make_napari_viewer, tmp_path: Path,
                                           tiny_model) -> None:
    viewer, widget = _widget(make_napari_viewer, tiny_model())
    assert widget.predict() is None
    assert "no image layer chosen" in widget.status.text()
    viewer.add_image(np.zeros((20, 20), np.uint8), name="a")
    widget.out_root.setText("relative/runs")
    viewer.add_labels(np.zeros((20, 20), np.uint8), name="a labels")
    assert widget.fine_tune() is None
    assert "give a full path" in widget.status.text()
    assert widget.export_to(tmp_path / "m.zip", "bioimageio") is None
    assert "fill in the authors and licence" in widget.status.text()


def test_napari_finds_the_widget_and_the_reader_through_the_manifest(
        make_napari_viewer, npe2pm, tiny_run: Path, tmp_path: Path) -> None:
    """The manifest registered as an installed plugin's is (npe2's test plugin manager):
    its commands import, napari opens a run's config.yaml and a label TIFF with it (the
    file's pixel size as scale), `viewer.open` still uses napari's own reader by default,
    and the widget docks from it."""
    import tifffile
    from npe2 import PluginManifest

    import unetzoo.napari
    from unetzoo.data.large import PixelSize
    from unetzoo.data.writers import write_label_tiff
    from unetzoo.napari.widget import UnetzooWidget

    manifest = PluginManifest.from_file(Path(unetzoo.napari.__file__).parent / "napari.yaml")
    assert manifest.name == "unetzoo"
    for command in manifest.contributions.commands or []:
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(import_module(module), name)), command.python_name
    npe2pm.register(manifest)
    builtins = import_module("napari_builtins")
    npe2pm.register(PluginManifest.from_file(Path(builtins.__file__).parent / "builtins.yaml"))
    viewer = make_napari_viewer()
    layers = viewer.open(str(tiny_run / "config.yaml"), plugin=None)  # unetzoo's alone
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels", "Labels"]
    assert layers[2].name == f"{tiny_run.name}: img_003 labels"
    labels = np.zeros((30, 40), np.uint16)
    labels[2:5, 2:5] = 1
    path = write_label_tiff(tmp_path / "cells.tif", labels, PixelSize(0.25, 0.5))
    [layer] = viewer.open(str(path), plugin="unetzoo")
    assert type(layer).__name__ == "Labels" and layer.name == "cells labels"
    np.testing.assert_allclose(layer.scale, (0.5, 0.25), rtol=1e-4)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((20, 20), np.uint16))
    [plain] = viewer.open(str(tmp_path / "plain.tif"))
    assert type(plain).__name__ == "Image"
    _, widget = viewer.window.add_plugin_dock_widget("unetzoo", "unetzoo")
    assert isinstance(widget, UnetzooWidget)


def test_open_labels_adds_labels_layers_with_their_pixel_size(make_napari_viewer, tiny_model,
                                                             tmp_path: Path) -> None:
    from unetzoo.data.large import PixelSize
    from unetzoo.data.writers import write_label_tiff

    _, widget = _widget(make_napari_viewer, tiny_model())
    labels = np.zeros((30, 40), np.uint16)
    labels[2:5, 2:5], labels[9:12, 9:12] = 1, 2
    path = write_label_tiff(tmp_path / "cells.tif", labels, PixelSize(0.25, 0.5))
    Image.fromarray(np.full((5, 5), 7, np.uint8)).save(tmp_path / "gray.png")
    [layer] = widget.open_labels([path, tmp_path / "gray.png"])
    assert layer.name == "cells labels"
    np.testing.assert_array_equal(layer.data, labels)
    np.testing.assert_allclose(layer.scale, (0.5, 0.25), rtol=1e-4)
    assert "gray.png" in widget.status.text() and "not a label image" in widget.status.text()
