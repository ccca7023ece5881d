"""The plugin's dock widget: pick a model, predict the selected image layer into a labels
layer, fine-tune on corrected layers for a time budget, export the model.

Every long job (opening a model, predicting, writing corrections and training, exporting)
runs in a worker thread (`napari.qt.threading.create_worker`), one job at a time; the
widget's progress bar follows it through a Qt signal (queued into the viewer's thread), so
the viewer never freezes. "Cancel" stops a prediction before its next forward pass and a
fine-tuning after its current training step (`loop.StopSwitch`: as a Ctrl-C, the run
keeps `epoch_last.pt` and can be resumed). The logic lives in `unetzoo.napari.loop`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..artefacts.pretrained import list_pretrained
from ..engine.inference.predictor import InferenceOptions
from ..errors import ConfigError, UnetzooError
from .loop import (
    CORRECTIONS_SUFFIX,
    DEFAULT_RUN_ROOT,
    EXPORT_KINDS,
    Cancelled,
    Correction,
    FineTuneResult,
    OpenedModel,
    StopSwitch,
    export_model,
    fine_tune,
    labels_name,
    open_model,
    predict_layer,
    run_folder,
    write_corrections,
)
from .reader import read_labels

if TYPE_CHECKING:
    import napari

log = logging.getLogger("unetzoo")

MODEL_FILES = "Models (*.pt *.zip *.onnx *.xml *.torchscript *.yaml);;All files (*)"
LABEL_FILES = "Label images (*.tif *.tiff *.png);;All files (*)"
PROGRESS_STEPS = 1000  # the progress bar's resolution


class _Relay(QObject):
    """Signals emitted from worker threads, delivered in the viewer's thread."""

    progress = Signal(int, int)  # done, total
    message = Signal(str)


def _one_line(exc: BaseException) -> str:
    """An error as the status line shows it: a unetzoo error's own line, else its type."""
    if isinstance(exc, UnetzooError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class UnetzooWidget(QWidget):
    """The dock widget (npe2 widget contribution `unetzoo.widget`).

    Attributes (besides the Qt controls):
        options: the inference options of every model opened (default: backend auto).
        train_options: further `TrainConfig` options for fine-tuning (e.g. `precision`).
        model: the model opened last (None until the first prediction or fine-tuning).
        last_run: the run folder of the last fine-tuning.
        worker: the job running now, or None.

    Args:
        napari_viewer: the viewer (napari passes it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.options: InferenceOptions | None = None
        self.train_options: dict[str, Any] = {}
        self.model: OpenedModel | None = None
        self.last_run: Path | None = None
        self.worker: Any = None
        self._cancel = False
        self._switch: StopSwitch | None = None
        self._checked: dict[str, bool] = {}
        self._started = 0.0
        self._budget_s = 0.0
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.message.connect(self._say)
        self._clock = QTimer(self)
        self._clock.setInterval(500)
        self._clock.timeout.connect(self._tick)
        self._build()
        for name in ("inserted", "removed", "moved", "reordered"):
            getattr(self.viewer.layers.events, name).connect(self._layers_changed)
        self._layers_changed()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)

        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.addItems([m.name for m in list_pretrained()])
        self.model_box.setToolTip("a shipped model's name, a training run folder, a model "
                                  "folder, a checkpoint (.pt), a bioimage.io package or an "
                                  "exported graph")
        form.addRow("model", self.model_box)
        row = QHBoxLayout()
        folder = QPushButton("Folder…")
        folder.clicked.connect(self._choose_model_folder)
        file = QPushButton("File…")
        file.clicked.connect(self._choose_model_file)
        row.addWidget(folder)
        row.addWidget(file)
        form.addRow(row)
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        layout.addWidget(box)

        box = QGroupBox("Predict")
        form = QFormLayout(box)
        self.image_box = QComboBox()
        form.addRow("image", self.image_box)
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("labels of the image layer into the labels layer "
                                       "'<image> labels' (made or replaced)")
        self.predict_button.clicked.connect(self.predict)
        self.open_labels_button = QPushButton("Open labels…")
        self.open_labels_button.setToolTip("label images unetzoo predict wrote (label TIFF, "
                                           "0/255 or palette PNG) as labels layers "
                                           "'<stem> labels', with their pixel size")
        self.open_labels_button.clicked.connect(self._open_labels_clicked)
        row = QHBoxLayout()
        row.addWidget(self.predict_button)
        row.addWidget(self.open_labels_button)
        form.addRow(row)
        layout.addWidget(box)

        box = QGroupBox("Fine-tune on corrected labels")
        form = QFormLayout(box)
        self.pairs_list = QListWidget()
        self.pairs_list.setToolTip("image layers with a '<image> labels' layer; ticked pairs "
                                   "are trained on (untick those you have not corrected)")
        self.pairs_list.setMaximumHeight(110)
        self.pairs_list.itemChanged.connect(self._pair_ticked)
        form.addRow("pairs", self.pairs_list)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.01, 24 * 60)
        self.minutes.setDecimals(2)
        self.minutes.setSingleStep(1.0)
        self.minutes.setValue(5.0)
        self.minutes.setSuffix(" min")
        form.addRow("time budget", self.minutes)
        row = QHBoxLayout()
        self.out_root = QLineEdit(str(DEFAULT_RUN_ROOT))
        self.out_root.setToolTip("runs go to <this folder>/<image>-<date-time>, the corrected "
                                 "pairs beside them (<run>-corrections)")
        browse = QPushButton("…")
        browse.clicked.connect(self._choose_out_root)
        row.addWidget(self.out_root)
        row.addWidget(browse)
        form.addRow("runs in", row)
        self.fine_tune_button = QPushButton("Fine-tune")
        self.fine_tune_button.clicked.connect(self.fine_tune)
        form.addRow(self.fine_tune_button)
        layout.addWidget(box)

        box = QGroupBox("Export")
        form = QFormLayout(box)
        self.export_kind = QComboBox()
        for key, text in EXPORT_KINDS.items():
            self.export_kind.addItem(text, key)
        form.addRow("as", self.export_kind)
        self.authors = QLineEdit()
        self.authors.setPlaceholderText("names, separated by commas")
        form.addRow("authors", self.authors)
        self.license = QLineEdit()
        self.license.setPlaceholderText("SPDX id, e.g. CC-BY-4.0 or MIT")
        form.addRow("licence", self.license)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export_clicked)
        form.addRow(self.export_button)
        layout.addWidget(box)

        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # -- layers ------------------------------------------------------------------------
    def _image_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def pairs(self) -> list[tuple[Image, Labels]]:
        """(image layer, its labels layer) for every image layer with a labels layer named
        `<image> labels` of the same plane shape."""
        found = []
        for image in self._image_layers():
            name = labels_name(image.name)
            if name not in self.viewer.layers:
                continue
            labels = self.viewer.layers[name]
            if isinstance(labels, Labels) and tuple(labels.data.shape) == \
                    self._plane_shape(image):
                found.append((image, labels))
        return found

    @staticmethod
    def _plane_shape(image: Image) -> tuple[int, ...]:
        shape = tuple(image.data[0].shape if image.multiscale else image.data.shape)
        return shape[:-1] if image.rgb else shape

    def _layers_changed(self, event: Any = None) -> None:
        for layer in self.viewer.layers:  # a renamed layer renames its pair too
            if not getattr(layer, "_unetzoo_watched", False):
                layer.events.name.connect(self._layers_changed)
                layer._unetzoo_watched = True  # type: ignore[attr-defined]
        current = self.image_box.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.image_box.blockSignals(True)
        self.image_box.clear()
        self.image_box.addItems(names)
        if current in names:
            self.image_box.setCurrentText(current)
        elif isinstance(self.viewer.layers.selection.active, Image):
            self.image_box.setCurrentText(self.viewer.layers.selection.active.name)
        self.image_box.blockSignals(False)
        self.pairs_list.blockSignals(True)
        self.pairs_list.clear()
        for image, _ in self.pairs():
            item = QListWidgetItem(image.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            ticked = self._checked.get(image.name, True)
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.pairs_list.addItem(item)
        self.pairs_list.blockSignals(False)

    def _pair_ticked(self, item: QListWidgetItem) -> None:
        self._checked[item.text()] = item.checkState() == Qt.CheckState.Checked

    def selected_image(self) -> Image:
        """The image layer chosen in the widget.

        Raises:
            ConfigError: there is none.
        """
        name = self.image_box.currentText()
        if not name or name not in self.viewer.layers or \
                not isinstance(self.viewer.layers[name], Image):
            raise ConfigError("no image layer chosen: open an image (File > Open) and choose "
                              "it under Predict")
        return self.viewer.layers[name]

    def show_labels(self, image: Image, labels: np.ndarray, model: OpenedModel) -> list[Labels]:
        """Put predicted labels into the image's labels layer (its data replaced where it
        has the same shape, else a new layer), with the image's scale and translation; a
        multilabel model fills one layer per class (`<image> labels <class>`)."""
        if model.task == "multilabel":
            names = [f"{labels_name(image.name)} {c}" for c in model.class_names] or \
                [f"{labels_name(image.name)} {k}" for k in range(len(labels))]
            items = list(zip(names, labels, strict=True))
        else:
            items = [(labels_name(image.name), labels)]
        shown = []
        meta = {"model": model.reference.given, "task": model.task, "image": image.name}
        for name, data in items:
            layer = next((lay for lay in self.viewer.layers if lay.name == name), None)
            if isinstance(layer, Labels) and layer.data.shape == data.shape:
                layer.data = data
            else:
                layer = self.viewer.add_labels(data, name=name, scale=image.scale,
                                               translate=image.translate)
            layer.metadata["unetzoo"] = meta
            shown.append(layer)
        self._layers_changed()
        return shown

    # -- jobs --------------------------------------------------------------------------
    @property
    def _job_buttons(self) -> tuple[QPushButton, ...]:
        return (self.predict_button, self.fine_tune_button, self.export_button)

    @property
    def busy(self) -> bool:
        """Whether a job runs."""
        return self.worker is not None

    def _start(self, job: Callable[[], Any], done: Callable[[Any], None], what: str) -> Any:
        if self.busy:
            self._say("a job is running: wait for it or cancel it first")
            return None
        self._cancel = False
        self.progress.setValue(0)
        for button in self._job_buttons:
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._say(what)

        def guarded() -> Any:
            try:
                return job()
            except KeyboardInterrupt as exc:  # a worker thread lets only Exceptions out
                raise RuntimeError(f"stopped: {exc}") from exc

        worker = create_worker(guarded, _ignore_errors=True)
        worker.returned.connect(done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _finished(self) -> None:
        self.worker = None
        self._switch = None
        self._clock.stop()
        for button in self._job_buttons:
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._say("cancelled")
            return
        line = _one_line(exc)
        log.warning(f"napari plugin: {line}")
        self._say(line)
        show_error(line)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(PROGRESS_STEPS * done / max(total, 1)))

    def _tick(self) -> None:
        """The training clock: the budget's share spent (at most 99 % until it ends)."""
        spent = time.monotonic() - self._started
        self.progress.setValue(min(int(PROGRESS_STEPS * spent / self._budget_s),
                                   PROGRESS_STEPS - 10))

    def cancel(self) -> None:
        """Stop the running job: a prediction before its next forward pass, a fine-tuning
        after its current step (the run keeps where it stood, resumable)."""
        self._cancel = True
        if self._switch is not None:
            self._switch.request()
            self._say("stopping after the current training step…")
        else:
            self._say("cancelling…")

    def _model_for(self, text: str) -> OpenedModel:
        """The model named `text`, opened (in the worker thread) unless it is open."""
        model = self.model
        if model is None or text.strip() != model.reference.given:
            model = open_model(text, self.options)
            self.model = model
            self._relay.message.emit(model.describe())
        return model

    # -- predict -----------------------------------------------------------------------
    def predict(self) -> Any:
        """Predict the chosen image layer into its labels layer (in a worker thread).

        Returns:
            The worker, or None when nothing started (an error is shown instead).
        """
        try:
            image = self.selected_image()
        except UnetzooError as exc:
            self._failed(exc)
            return None
        data = image.data[0] if image.multiscale else image.data
        rgb, text = bool(image.rgb), self.model_box.currentText()

        def job() -> tuple[OpenedModel, np.ndarray]:
            model = self._model_for(text)
            labels = predict_layer(model.predictor, data, rgb, self._relay.progress.emit,
                                   lambda: self._cancel)
            return model, labels

        def done(result: tuple[OpenedModel, np.ndarray]) -> None:
            model, labels = result
            self.model_info.setText(model.describe())
            self.show_labels(image, labels, model)
            self._say(f"predicted {image.name!r} with {model.reference.name} into "
                      f"{labels_name(image.name)!r}" + self._found(labels, model))

        return self._start(job, done, f"predicting {image.name!r}…")

    @staticmethod
    def _found(labels: np.ndarray, model: OpenedModel) -> str:
        if model.task == "instance":
            return f": {len(np.unique(labels[labels > 0]))} objects"
        if model.task == "binary":
            return f": {100 * float(np.mean(labels > 0)):.1f} % foreground"
        return ""

    # -- fine-tune ---------------------------------------------------------------------
    def run_root(self) -> Path:
        """The folder runs go in (the `runs in` field).

        Raises:
            ConfigError: a relative path (never the working folder silently).
        """
        text = self.out_root.text().strip()
        root = Path(text).expanduser() if text else DEFAULT_RUN_ROOT
        if not root.is_absolute():
            raise ConfigError(f"runs in {text!r}: give a full path (e.g. ~/unetzoo-runs), "
                              "not one relative to napari's working folder")
        return root

    def corrections(self) -> list[Correction]:
        """The ticked pairs, their labels copied now (painting may go on meanwhile)."""
        ticked = {self.pairs_list.item(i).text() for i in range(self.pairs_list.count())
                  if self.pairs_list.item(i).checkState() == Qt.CheckState.Checked}
        return [Correction(image.name, image.data[0] if image.multiscale else image.data,
                           bool(image.rgb), np.array(labels.data))
                for image, labels in self.pairs() if image.name in ticked]

    def fine_tune(self) -> Any:
        """Fine-tune the current model on the ticked pairs for the time budget, then open
        the new run's best checkpoint and predict the chosen image again (in a worker
        thread).

        Returns:
            The worker, or None when nothing started (an error is shown instead).
        """
        try:
            corrections = self.corrections()
            if not corrections:
                raise ConfigError("no pairs ticked: predict an image, correct its labels "
                                  "layer, and tick it under Fine-tune")
            root = self.run_root()
            image = self.selected_image()
        except UnetzooError as exc:
            self._failed(exc)
            return None
        run_dir = run_folder(root, image.name)
        dataset = Path(f"{run_dir}{CORRECTIONS_SUFFIX}")
        minutes, text = float(self.minutes.value()), self.model_box.currentText()
        data = image.data[0] if image.multiscale else image.data
        rgb = bool(image.rgb)
        switch = StopSwitch(on_epoch=lambda row: self._relay.message.emit(
            f"fine-tuning: epoch {row.get('epoch')}, loss {row.get('train_loss', 0):.4f}, "
            f"{row.get('elapsed_min', 0):.1f}/{minutes:g} min"))
        self._switch = switch

        def job() -> tuple[FineTuneResult, OpenedModel | None, np.ndarray | None]:
            model = self._model_for(text)
            pairs = write_corrections(corrections, dataset, model)
            self._relay.message.emit(f"fine-tuning {model.reference.name} on {len(pairs.names)}"
                                     f" image(s) for {minutes:g} min: {run_dir}")
            result = fine_tune(model, pairs, run_dir, minutes, switch, **self.train_options)
            if result.cancelled:
                return result, None, None
            tuned = open_model(str(result.run_dir), self.options)
            self._relay.message.emit(f"predicting {image.name!r} with the fine-tuned model…")
            try:
                labels = predict_layer(tuned.predictor, data, rgb, self._relay.progress.emit,
                                       lambda: self._cancel)
            except Cancelled:
                labels = None
            return result, tuned, labels

        def done(outcome: tuple[FineTuneResult, OpenedModel | None, np.ndarray | None]
                 ) -> None:
            result, tuned, labels = outcome
            self.last_run = result.run_dir
            if tuned is None:
                self._say(f"fine-tuning cancelled; the run is kept in {result.run_dir} "
                          f"(unetzoo train --resume {result.run_dir}); the model is unchanged")
                return
            self.model = tuned
            self.model_box.setCurrentText(tuned.reference.given)
            self.model_info.setText(tuned.describe())
            again = "prediction cancelled"
            if labels is not None:
                self.show_labels(image, labels, tuned)
                again = f"{labels_name(image.name)!r} predicted again"
            self._say(f"fine-tuned for {result.seconds / 60:.1f} min ({result.epochs} epochs): "
                      f"run folder {result.run_dir} (corrections in {dataset}); {again}")
            show_info(f"unetzoo: fine-tuned model in {result.run_dir}")

        worker = self._start(job, done, f"writing {len(corrections)} corrected pair(s)…")
        if worker is not None:
            self._started, self._budget_s = time.monotonic(), max(minutes * 60, 1.0)
            self._clock.start()
        else:
            self._switch = None
        return worker

    # -- export ------------------------------------------------------------------------
    def export_to(self, target: Path | str, kind: str | None = None) -> Any:
        """Export the current model (in a worker thread) as the chosen kind.

        Args:
            target: the folder or `.zip` to write (new).
            kind: `folder`, `bioimageio` or `run` (default: the widget's choice).

        Returns:
            The worker, or None when nothing started.
        """
        kind = kind or str(self.export_kind.currentData())
        text = self.model_box.currentText()
        authors = [a for a in self.authors.text().split(",") if a.strip()]
        license = self.license.text().strip() or None
        if kind == "bioimageio" and not (authors and license):
            self._failed(ConfigError("a bioimage.io package names its authors and the licence "
                                     "of its weights: fill in the authors and licence fields "
                                     "(an SPDX id, e.g. CC-BY-4.0)"))
            return None

        def job() -> Path:
            return export_model(self._model_for(text), kind, target, authors, license)

        def done(path: Path) -> None:
            self._say(f"exported {EXPORT_KINDS[kind]} to {path}")
            show_info(f"unetzoo: exported to {path}")

        return self._start(job, done, f"exporting to {target}…")

    def _export_clicked(self) -> None:
        kind = str(self.export_kind.currentData())
        hint = "package (*.zip)" if kind == "bioimageio" else "new folder (*)"
        start = str(self.last_run.parent if self.last_run is not None else Path.home())
        path, _ = QFileDialog.getSaveFileName(self, f"Export the model as a {EXPORT_KINDS[kind]}",
                                              start, hint)
        if path:
            if kind == "bioimageio" and not path.lower().endswith(".zip"):
                path += ".zip"
            self.export_to(path, kind)

    # -- label files -------------------------------------------------------------------
    def open_labels(self, paths: list[str] | list[Path]) -> list[Labels]:
        """Open label images `unetzoo predict` wrote as labels layers `<stem> labels`, with
        the pixel size each states as scale (`reader.read_labels`); a file that is not one
        is named in the status line.

        Returns:
            The layers added.
        """
        added, failed = [], []
        for path in paths:
            try:
                data, options, _ = read_labels(path)
            except UnetzooError as exc:
                failed.append(_one_line(exc))
                continue
            added.append(self.viewer.add_labels(data, **options))
        self._layers_changed()
        opened = [f"opened {', '.join(repr(layer.name) for layer in added)}"] if added else []
        self._say("; ".join(opened + failed))
        if failed:
            show_error(failed[0])
        return added

    def _open_labels_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Label images unetzoo predict wrote", "",
                                                LABEL_FILES)
        if paths:
            self.open_labels(paths)

    # -- file choosers -----------------------------------------------------------------
    def _choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A training run folder or a model folder")
        if path:
            self.model_box.setCurrentText(path)

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A model file", "", MODEL_FILES)
        if path:
            self.model_box.setCurrentText(path)

    def _choose_out_root(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Where fine-tuning runs go",
                                                self.out_root.text())
        if path:
            self.out_root.setText(path)
