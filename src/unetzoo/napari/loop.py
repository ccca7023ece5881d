"""The correct-and-fine-tune loop of the napari plugin, without Qt: open a model, predict a
layer's pixels into labels, write corrected layers as a dataset, fine-tune on it, export.

The widget (`unetzoo.napari.widget`) runs these functions in worker threads; they take and
give numpy arrays as napari layers hold them, so they are tested without a viewer.

A napari image layer is read by napari's own rule: an `rgb` layer is `... x H x W x C`
(C = 3, or 4 with the last channel alpha, which is dropped), any other layer
`... x H x W`, and every leading axis (z, time, channels split into layers or not) is a
stack of planes predicted one by one. Each plane is
handed to the predictor as a numpy image (`engine.inference.predictor`: 8-bit / 255,
16-bit / 65535, floats as stored; 32- and 64-bit integers refused in one line), so a plane
gives the labels `unetzoo predict` writes for a file of the same pixels.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import train
from ..artefacts.checkpoint import Checkpoint
from ..artefacts.modelcard import CardInfo
from ..artefacts.references import ModelReference, resolve_model, save_pretrained
from ..data.io import image_from_array
from ..data.writers import write_label_png, write_label_tiff
from ..engine.inference.predictor import InferenceOptions, Predictor
from ..engine.inference.tiling import tile_starts
from ..engine.inference.tta import tta_transforms
from ..engine.training.preemption import TrainingInterrupted
from ..engine.training.trainer import Callback, Trainer, TrainResult
from ..errors import CheckpointError, ConfigError, DataError, RunError
from ..fileio import atomic_folder

log = logging.getLogger("unetzoo")

LABELS_SUFFIX = " labels"  # the labels layer of image layer `X` is `X labels`
DEFAULT_RUN_ROOT = Path.home() / "unetzoo-runs"
CORRECTIONS_SUFFIX = "-corrections"  # the dataset beside the run folder `<image>-<time>`
SPLIT_CSV = "split.csv"
EXPORT_KINDS: dict[str, str] = {
    "folder": "model folder (config.json + model.safetensors + README.md)",
    "bioimageio": "bioimage.io package (.zip)",
    "run": "copy of the training run folder",
}


class Cancelled(Exception):
    """A prediction stopped on request (between two forward passes)."""


def labels_name(image_name: str) -> str:
    """The name of the labels layer that holds an image layer's labels."""
    return f"{image_name}{LABELS_SUFFIX}"


def safe_name(text: str) -> str:
    """`text` as a file name: letters, digits, `.`, `_` and `-` kept, runs of anything else
    turned into one `_` (at most 80 characters; `image` for an empty result)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]
    return cleaned or "image"


# -- the model ---------------------------------------------------------------------------
@dataclass
class OpenedModel:
    """A model opened for the loop: what the user named, its predictor, and its weights
    where it has them (None for an exported graph or another tool's package: predict only).

    Attributes:
        reference: what the user named (`resolve_model`).
        predictor: the predictor, counting forward passes (`CountingPredictor`).
        checkpoint: the checkpoint with trainable weights, or None.
    """

    reference: ModelReference
    predictor: CountingPredictor
    checkpoint: Checkpoint | None

    @property
    def task(self) -> str:
        return str(self.predictor.task)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.class_names) if self.checkpoint is not None else ()

    @property
    def init(self) -> str:
        """What `train(init=...)` takes for this model: a shipped name, else its file."""
        ref = self.reference
        return ref.given if ref.kind == "shipped" else str(ref.path)

    def describe(self) -> str:
        """One line: name, kind, task, input channels, backend, and whether it fine-tunes."""
        pre = self.predictor.preprocessing
        tunable = "fine-tunable" if self.checkpoint is not None else \
            "predicts only (no trainable weights)"
        return (f"{self.reference.name}: {self.reference.kind}, {self.task} model, "
                f"{pre.in_channels} input channel(s), {self.predictor.runtime.backend}; "
                f"{tunable}")


class CountingPredictor(Predictor):
    """A `Predictor` that calls `on_forward` before each forward pass through the model (a
    batch of tiles, or one transform of it with test-time augmentation): the plugin's
    progress bar counts them, and `on_forward` may raise `Cancelled` to stop."""

    on_forward: Callable[[], None] | None = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.on_forward is not None:
            self.on_forward()
        return super().forward(batch)


def open_model(value: str | Path, options: InferenceOptions | None = None) -> OpenedModel:
    """Open anything `resolve_model` takes (a shipped name, a run folder, a checkpoint, a
    model folder, a package, an exported graph) for prediction and, where it holds weights,
    fine-tuning.

    Args:
        value: the reference as the user typed it.
        options: inference options (default: `InferenceOptions()`, backend auto: OpenVINO
            where installed, converted once and cached).

    Returns:
        The `OpenedModel`.

    Raises:
        CheckpointError, ConfigError: as `resolve_model` and `Predictor.open` (one line
            listing what a model reference may be).
    """
    text = str(value).strip()
    if not text:
        raise ConfigError("no model given: type a shipped name (e.g. nuclei), or choose a "
                          "run folder, model folder or file")
    reference = resolve_model(text)
    checkpoint = reference.checkpoint() if reference.has_weights else None
    predictor = CountingPredictor.open(reference, options, checkpoint=checkpoint)
    return OpenedModel(reference, predictor, checkpoint)


# -- prediction --------------------------------------------------------------------------
def plane_axes(shape: Sequence[int], rgb: bool) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(the leading shape of the planes, (H, W)) of a napari image layer's data.

    Raises:
        DataError: fewer than two spatial axes.
    """
    spatial = len(shape) - (1 if rgb else 0)
    if spatial < 2:
        raise DataError(f"an image layer of shape {tuple(shape)} has no H x W plane")
    return tuple(shape[: spatial - 2]), (int(shape[spatial - 2]), int(shape[spatial - 1]))


def layer_plane(array: np.ndarray, index: tuple[int, ...], rgb: bool) -> np.ndarray:
    """One plane of a layer's data: `H x W`, or `H x W x 3` for an `rgb` layer (napari's
    4th channel of an rgb layer is alpha: dropped)."""
    plane = array[index]
    return plane[..., :3] if rgb and plane.ndim == 3 and plane.shape[2] == 4 else plane


def forward_passes(predictor: Predictor, height: int, width: int) -> int:
    """How many forward passes the predictor makes for one `height x width` plane (the
    progress bar's length): tiles in batches, times the test-time transforms."""
    pre = predictor.preprocessing
    size = pre.img_size
    if pre.resize_mode == "resize" or (height <= size and width <= size):
        batches = 1
    else:
        overlap = predictor.options.overlap
        tiles = len(tile_starts(height, min(size, height), overlap)) * \
            len(tile_starts(width, min(size, width), overlap))
        batches = math.ceil(tiles / predictor.options.batch_size)
    return batches * len(tta_transforms(predictor.options.tta))


def predict_layer(predictor: CountingPredictor, data: Any, rgb: bool,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Labels of a napari image layer's data, plane by plane (tiling as the predictor
    does it).

    Args:
        predictor: the model's predictor.
        data: the layer's data (`... x H x W`, or `... x H x W x C` with `rgb`); a
            multiscale layer's full-resolution level (`layer.data[0]`).
        rgb: the layer's `rgb` flag (last axis: channels).
        progress: called with (forward passes done, passes in all) after each pass.
        should_stop: polled before each pass; True stops with `Cancelled`.

    Returns:
        `... x H x W` labels: int32 object ids (an instance model; ids are unique across
        planes), or uint8 classes (binary: 0 / 1; multiclass: class indices); a multilabel
        model gives `K x ... x H x W` (one 0 / 1 map per class, first).

    Raises:
        DataError: a plane the predictor cannot read (e.g. 64-bit integers), in one line.
        Cancelled: `should_stop` said so.
    """
    array = np.asarray(data)
    lead, (height, width) = plane_axes(array.shape, rgb)
    planes = list(np.ndindex(*lead)) if lead else [()]
    total = forward_passes(predictor, height, width) * len(planes)
    done = 0

    def count() -> None:
        nonlocal done
        if should_stop is not None and should_stop():
            raise Cancelled("prediction cancelled")
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    predictor.on_forward = count
    try:
        outputs = []
        offset = 0
        for index in planes:
            labels = np.asarray(predictor.labels(layer_plane(array, index, rgb)))
            if predictor.task == "instance":
                labels = labels.astype(np.int32, copy=False)
                largest = int(labels.max()) if labels.size else 0
                if offset:
                    labels = np.where(labels > 0, labels + offset, 0).astype(np.int32)
                offset += largest
            outputs.append(labels)
    finally:
        predictor.on_forward = None
    if progress is not None:
        progress(total, total)
    stacked = np.stack(outputs).reshape(*lead, *outputs[0].shape)
    if predictor.task == "multilabel":  # ... x K x H x W -> K x ... x H x W
        stacked = np.moveaxis(stacked, len(lead), 0)
    return stacked


# -- corrections as a dataset ------------------------------------------------------------
@dataclass(frozen=True)
class Correction:
    """An image layer and its corrected labels layer, as napari holds them.

    Attributes:
        name: the image layer's name.
        image: its data (`... x H x W`, or `... x H x W x C` with `rgb`).
        rgb: the image layer's `rgb` flag.
        labels: the labels layer's data, `... x H x W` (integers: object ids or classes).
    """

    name: str
    image: Any
    rgb: bool
    labels: Any


@dataclass(frozen=True)
class CorrectionSet:
    """A dataset folder written from corrections: `images/`, `masks/` and `split.csv`
    (every pair in train).

    Attributes:
        folder: the dataset folder.
        csvfile: its split CSV.
        names: the pairs' file stems, in order.
    """

    folder: Path
    csvfile: Path
    names: tuple[str, ...]


def _image_for_model(plane: np.ndarray, channels: int, name: str) -> np.ndarray:
    """A plane as an image file of the model's channel count: the pixels as stored where the
    channels fit (gray replicated for a 3-channel model, dtype kept), else read by the
    predictor's rule (`image_from_array`: float32, e.g. RGB to luminance)."""
    try:
        converted = image_from_array(plane, channels)  # the predictor's check, in one line
    except DataError as exc:
        raise DataError(f"image layer {name!r}: {exc.message}") from None
    found = plane.shape[2] if plane.ndim == 3 else 1
    if found == channels:
        return plane
    if found == 1 and channels == 3:
        gray = plane if plane.ndim == 2 else plane[..., 0]
        return np.repeat(gray[..., None], 3, axis=2)
    return converted if channels > 1 else converted[..., 0]


def _mask_for_task(labels: np.ndarray, task: str, classes: int, name: str) -> np.ndarray:
    """A labels plane as the mask file the task trains on; refuses labels the model cannot
    learn, naming the layer."""
    if labels.dtype.kind not in "biu":
        raise DataError(f"labels layer {labels_name(name)!r} holds {labels.dtype} values; "
                        "labels are integers")
    smallest = int(labels.min()) if labels.size else 0
    if smallest < 0:
        raise DataError(f"labels layer {labels_name(name)!r} holds negative labels "
                        f"({smallest}); use 0 for background")
    if task == "multiclass":
        largest = int(labels.max()) if labels.size else 0
        if largest >= classes:
            raise DataError(f"labels layer {labels_name(name)!r} holds label {largest}, but "
                            f"the model has {classes} classes (0..{classes - 1}); paint with "
                            "the model's class indices")
        return labels.astype(np.uint8)
    if task == "binary":
        return (labels > 0).astype(np.uint8) * 255
    return labels


def write_corrections(corrections: Sequence[Correction], folder: Path | str,
                      model: OpenedModel) -> CorrectionSet:
    """Write image and labels layers as a paired dataset the model's task trains on:
    `images/<name>.tif` (each plane of a stack its own pair, `<name>_p<index>`; the pixels
    as stored, converted only where the model has another channel count) and
    `masks/<name>.tif` (an instance model: 16-bit label TIFF, 32-bit past 65,535 objects)
    or `masks/<name>.png` (binary: 0 / 255; multiclass: class indices), with `split.csv`
    putting every pair in train. The folder is built beside its place and moved there when
    complete (`fileio.atomic_folder`).

    Args:
        corrections: the pairs (image and labels layers of the same H x W).
        folder: the dataset folder to create (new or empty).
        model: the model to fine-tune (its task, classes and input channels).

    Returns:
        The `CorrectionSet`.

    Raises:
        ConfigError: no pairs; a multilabel model (one labels layer cannot hold K maps);
            a model without trainable weights.
        DataError: naming the layer: shapes that differ, labels that are not integers or
            do not fit the model's classes, image pixels the predictor cannot read.
        RunError: the folder exists and is not empty.
    """
    import tifffile

    if model.checkpoint is None:
        raise ConfigError(f"{model.reference.name} holds no trainable weights (an exported "
                          "graph or another tool's package): open a checkpoint, run folder, "
                          "model folder or shipped model to fine-tune")
    if not corrections:
        raise ConfigError("nothing to fine-tune on: predict an image, correct its labels "
                          "layer, and tick the pair")
    task = model.task
    if task == "multilabel":
        raise ConfigError("fine-tuning a multilabel model from napari is not supported (one "
                          "labels layer cannot hold overlapping classes); use `unetzoo train "
                          "--init` with a mask folder per class")
    channels = model.predictor.preprocessing.in_channels
    classes = len(model.class_names) if task == "multiclass" else 0
    suffix = ".tif" if task == "instance" else ".png"
    rows, names = ["image,mask,split"], []
    used: set[str] = set()
    with atomic_folder(folder) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for item in corrections:
            image, labels = np.asarray(item.image), np.asarray(item.labels)
            lead, size = plane_axes(image.shape, item.rgb)
            if tuple(labels.shape) != (*lead, *size):
                raise DataError(f"labels layer {labels_name(item.name)!r} has shape "
                                f"{tuple(labels.shape)}, its image {item.name!r} "
                                f"{(*lead, *size)}: they must match pixel for pixel")
            stem = safe_name(item.name)
            while stem in used:
                stem += "_"
            used.add(stem)
            for index in (list(np.ndindex(*lead)) if lead else [()]):
                name = stem + "".join(f"_p{i}" for i in index)
                pixels = _image_for_model(layer_plane(image, index, item.rgb), channels,
                                          item.name)
                mask = _mask_for_task(labels[index], task, classes, item.name)
                photometric = "rgb" if pixels.ndim == 3 and pixels.shape[2] == 3 \
                    else "minisblack"
                tifffile.imwrite(tmp / "images" / f"{name}.tif", pixels,
                                 photometric=photometric)
                if task == "instance":
                    write_label_tiff(tmp / "masks" / f"{name}{suffix}", mask)
                else:
                    write_label_png(tmp / "masks" / f"{name}{suffix}", mask, bits=8)
                rows.append(f"images/{name}.tif,masks/{name}{suffix},train")
                names.append(name)
        (tmp / SPLIT_CSV).write_text("\n".join(rows) + "\n", encoding="utf-8")
    folder = Path(folder)
    return CorrectionSet(folder, folder / SPLIT_CSV, tuple(names))


# -- fine-tuning -------------------------------------------------------------------------
class StopSwitch(Callback):
    """A trainer callback the widget holds: `request()` (from any thread) stops training
    after the current step, as a Ctrl-C does (the trainer saves `epoch_last.pt` and raises
    `TrainingInterrupted`); `on_epoch(row)` hears each epoch's `metrics.csv` line."""

    def __init__(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_epoch = on_epoch
        self.requested = False
        self._trainer: Trainer | None = None

    def request(self) -> None:
        """Ask training to stop after its current step (before it starts: at once)."""
        self.requested = True
        if self._trainer is not None:
            self._trainer.stop.signum = int(signal.SIGINT)

    def on_train_start(self, trainer: Trainer) -> None:
        self._trainer = trainer
        if self.requested:
            trainer.stop.signum = int(signal.SIGINT)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any], validation: Any) -> None:
        if self.on_epoch is not None:
            self.on_epoch(dict(row))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        self._trainer = None


@dataclass
class FineTuneResult:
    """What a fine-tuning did.

    Attributes:
        run_dir: the run folder (complete, or resumable after a cancel).
        best: its `models/best.pt`, or None when cancelled.
        cancelled: stopped on request (`epoch_last.pt` holds where it stood).
        epochs: epochs finished.
        seconds: wall time of `train`.
    """

    run_dir: Path
    best: Path | None
    cancelled: bool
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def run_folder(root: Path | str, image_name: str) -> Path:
    """`<root>/<image>-<date-time>` (the image's name made a file name), a new folder."""
    base = Path(root).expanduser() / f"{safe_name(image_name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists() or Path(f"{path}{CORRECTIONS_SUFFIX}").exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def fine_tune(model: OpenedModel, corrections: CorrectionSet, run_dir: Path | str,
              minutes: float, switch: StopSwitch | None = None,
              **options: Any) -> FineTuneResult:
    """Fine-tune `model` on corrections for a time budget: `unetzoo.train` from the model's
    weights (`init`), its task (and classes, or object representation), every pair in
    train (no validation or test split: the corrections are too few to set any apart; the
    last weights are the best), the plan (`unetzoo plan`) for the rest of the recipe,
    data loaded in this process (no worker processes forked from the viewer). One-time
    imports are done before the budget's clock starts (the trainer's).

    Args:
        model: the model to start from (with weights).
        corrections: the dataset `write_corrections` wrote.
        run_dir: the run folder to create.
        minutes: the time budget (wall clock, set-up included).
        switch: the `StopSwitch` that can stop it.
        **options: further `TrainConfig` options (they override the above).

    Returns:
        A `FineTuneResult` (`cancelled` when the switch stopped it).

    Raises:
        ConfigError, DataError, RunError, TrainingError, CheckpointError: as `train`, e.g.
            a budget spent before the first step.
    """
    if model.checkpoint is None:
        raise ConfigError(f"{model.reference.name} holds no trainable weights: open a "
                          "checkpoint, run folder, model folder or shipped model to fine-tune")
    if not minutes > 0:
        raise ConfigError(f"the time budget must be > 0 minutes, got {minutes}")
    checkpoint = model.checkpoint
    values: dict[str, Any] = dict(
        dataset=str(corrections.folder), csvfile=str(corrections.csvfile), init=model.init,
        task=model.task, time_budget=float(minutes), out=str(run_dir), val_fraction=0.0,
        test=False, workers=0, progress=False, logger="none")
    if model.task == "multiclass":
        values.update(num_classes=len(checkpoint.class_names),
                      class_names=list(checkpoint.class_names))
    if model.task == "instance" and checkpoint.instance:
        values["representation"] = checkpoint.instance.get("representation")
    values.update(options)
    start = time.perf_counter()
    callbacks: list[Callback] = [switch] if switch is not None else []
    try:
        result = train(callbacks=callbacks, **values)
    except TrainingInterrupted:
        log.info(f"fine-tuning cancelled; the run can continue with: unetzoo train --resume "
                 f"{run_dir}")
        return FineTuneResult(Path(run_dir), None, True, 0, time.perf_counter() - start)
    return FineTuneResult(result.run_dir, result.best_checkpoint, False, len(result.history),
                          time.perf_counter() - start, list(result.history))


# -- export ------------------------------------------------------------------------------
def export_model(model: OpenedModel, kind: str, target: Path | str,
                 authors: Sequence[str] = (), license: str | None = None) -> Path:
    """Write the current model for others.

    Args:
        model: the current model.
        kind: `folder` (a model folder, `save_pretrained`: config.json, weights and a model
            card), `bioimageio` (a BioImage Model Zoo package, tested before it is
            written; authors and licence required) or `run` (a copy of its training run
            folder, without its OpenVINO cache).
        target: the folder or `.zip` to write (new).
        authors: author names for the card or package.
        license: an SPDX identifier, e.g. `CC-BY-4.0`.

    Returns:
        What was written.

    Raises:
        ConfigError: an unknown kind; a package without authors or licence. RunError: the
            target exists, or `run` for a model that is not a training run's.
        CheckpointError: a model without trainable weights. ExportError: as
            `export_bioimageio`.
    """
    if kind not in EXPORT_KINDS:
        raise ConfigError(f"unknown export {kind!r}; choose {', '.join(EXPORT_KINDS)}")
    if model.checkpoint is None:
        raise CheckpointError(f"{model.reference.name} holds no trainable weights to export",
                              model.reference.path)
    authors = tuple(a.strip() for a in authors if a.strip())
    target = Path(target).expanduser()
    if kind == "folder":
        card = CardInfo(authors=authors, license=license or None)
        return save_pretrained(model.reference, target, card=card)
    if kind == "bioimageio":
        from ..engine.export.bioimageio import export_bioimageio

        return export_bioimageio(model.reference, target, authors=authors,
                                 license=license or None).path
    run = model.reference.run
    if run is None:
        raise RunError(f"{model.reference.name} is not a training run's model (it is a "
                       f"{model.reference.kind}): export a model folder or a package instead",
                       model.reference.path)
    with atomic_folder(target) as tmp:
        shutil.copytree(run, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".openvino", ".*.tmp"))
    return target
