"""Predict masks for new images and write them at each image's original size, from a
checkpoint or from an exported file alone (ONNX, OpenVINO IR, TorchScript)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..data.io import is_image_file, read_image
from ..errors import ConfigError, DataError, RunError
from ..fileio import atomic_write
from ..progress import progress_bar
from ..viz import class_colors, heatmap, save_png
from .backends import format_of, open_exported
from .bioimageio import is_package
from .bioimageio_run import open_package
from .infer import InferenceOptions, Predictor


@dataclass
class PredictResult:
    written: list[Path]
    images: int
    seconds: float


def input_images(source: Path) -> list[Path]:
    """The image files of a file or folder (sorted), with a clear error when there are none."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError("input not found", source)
    files = sorted(p for p in source.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise DataError("no image files in folder", source)
    return files


def _write_labels(path: Path, labels: np.ndarray, checkpoint: Checkpoint) -> None:
    """Binary (and each multilabel class): 0/255 PNG. Multiclass: a palette PNG whose pixel
    values are the class indices."""
    if checkpoint.task != "multiclass":
        save_png(path, (labels * 255).astype(np.uint8))
        return
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    colors = class_colors(checkpoint.model_spec["num_classes"], checkpoint.class_colors)
    image.putpalette(colors.flatten().tolist())
    atomic_write(path, lambda fh: image.save(fh, format="PNG"))


def _targets(stem: str, output: Path, checkpoint: Checkpoint, attention: int) -> Iterator[Path]:
    if checkpoint.task == "multilabel":
        for name in checkpoint.class_names:
            yield output / name / f"{stem}.png"
    else:
        yield output / f"{stem}.png"
    for level in range(attention):
        yield output / "attention" / f"{stem}_gate{level + 1}.png"


def load_model(model: Path | str, options: InferenceOptions) -> tuple[nn.Module, Checkpoint]:
    """The model of a checkpoint (file, model folder or pretrained name), of an exported file
    (`.onnx`, `.xml`, `.torchscript`) or of a BioImage Model Zoo package (`.zip`) opened in
    the options' backend, and the checkpoint it describes (for exported files and packages:
    without weights). A package of another tool brings its own input reader (`read_input`)."""
    path = Path(model)
    if is_package(path):
        if options.prune_depth is not None:
            raise ConfigError(f"{path}: --prune-depth needs a checkpoint; a package runs the "
                              "network it was exported with")
        opened = open_package(path, options.runtime.backend, options.runtime.precision)
        return opened.module, opened.checkpoint
    if format_of(path) is None:
        checkpoint = load_checkpoint(path)
        return checkpoint.build_model(options.prune_depth), checkpoint
    if options.prune_depth is not None:
        raise ConfigError(f"{path}: --prune-depth needs a checkpoint; an exported file runs "
                          "the network it was exported with (`unetzoo export --prune-depth`)")
    exported = open_exported(path, options.runtime.backend, options.runtime.precision)
    return exported.module, exported.checkpoint


def predict_paths(checkpoint_path: Path | str, source: Path | str, output: Path | str,
                  options: InferenceOptions | None = None, save_attention: bool = False,
                  overwrite: bool = False, progress: bool = True) -> PredictResult:
    """Write one mask per input image (multilabel: one folder per class) into `output`.

    `checkpoint_path` is a checkpoint or an exported file. Existing files are never replaced
    unless `overwrite`; `save_attention` also writes the attention maps of models that have
    them as heat-map PNGs.
    """
    options = options or InferenceOptions()
    files = input_images(Path(source))
    model, checkpoint = load_model(checkpoint_path, options)
    output = Path(output)
    levels = 0
    if save_attention:
        if not hasattr(model, "attention_maps") or options.runtime.backend != "torch":
            raise RunError(f"model {checkpoint.model_spec['name']!r} has no attention maps "
                           "here (exported graphs and non-torch backends never have them)")
        levels = len(model.gates)  # type: ignore[arg-type]
    clashes = [t for f in files for t in _targets(f.stem, output, checkpoint, levels)
               if t.exists()]
    if clashes and not overwrite:
        raise RunError(f"{len(clashes)} output file(s) exist, e.g. {clashes[0]}; pass "
                       "--overwrite to replace them or choose another --output", output)
    if output.resolve() in {f.parent.resolve() for f in files}:
        raise RunError("output folder is the input folder; choose another --output", output)
    predictor = Predictor(model, checkpoint.preprocessing, checkpoint.task, options)
    reader = getattr(model, "read_input", None)  # packages of other tools normalise per image
    written: list[Path] = []
    start = time.perf_counter()
    for path in progress_bar(files, "predict", "image", enabled=progress, leave=True):
        image = reader(path) if reader else read_image(path,
                                                       checkpoint.preprocessing.in_channels)
        labels = predictor.labels(image).numpy()
        targets = list(_targets(path.stem, output, checkpoint, levels))
        layers = labels if checkpoint.task == "multilabel" else [labels]
        for target, layer in zip(targets[: len(layers)], layers, strict=True):
            _write_labels(target, layer, checkpoint)
        if levels:
            with torch.inference_mode(), predictor.runtime.autocast():
                tensor = checkpoint.preprocessing.to_tensor(image)[None]
                maps = predictor.model.attention_maps(  # type: ignore[operator]
                    predictor.runtime.prepare_input(tensor))
            for target, amap in zip(targets[-levels:], maps, strict=True):
                full = F.interpolate(amap.float().cpu(), size=image.shape[:2], mode="bilinear",
                                     align_corners=False)[0, 0].numpy()
                save_png(target, heatmap(full))
        written += targets
    return PredictResult(written, len(files), time.perf_counter() - start)
