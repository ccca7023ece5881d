"""INT8 post-training quantisation with a measured accuracy check.

`export_int8` converts a model to OpenVINO (float32, checked against PyTorch), quantises it
with NNCF's post-training quantisation (`nncf.quantize`: min-max statistics of activations
on calibration inputs, symmetric INT8 weights and activations, fast bias correction)
calibrated on tiles of the run's training images exactly as the predictor makes its model
inputs (normalised with the dataset's or the whole image's statistics, then tiled or
resized), then evaluates the float model and the
INT8 model on the run's validation split with the ordinary evaluation code and writes the
INT8 file only if its dataset-global Dice is at most `MAX_DICE_DROP` below the float
model's (or with `accept_drop`). The scores of both models go into the file's metadata and
the result.

NNCF: Kozlov et al., "Neural Network Compression Framework for fast model inference",
arXiv:2002.08679; API `nncf.quantize(model, nncf.Dataset(items, transform))`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.runs import SPLIT_FILE, run_of
from ...data.dataset import (
    SegmentationDataset,
    check_files,
    spread_sample,
    verify_pairs,
)
from ...data.io import read_image
from ...data.layouts import Pair, find_pairs
from ...data.prepare import run_reading
from ...data.split import assign_splits
from ...data.transforms import resize_image
from ...errors import ConfigError, UnetzooError
from ...nn.padding import pad_to
from ...runtime import Runtime
from ..evaluate import evaluate
from ..inference.backends import ExportedModule, openvino_runner, require
from ..inference.graphs import export_metadata, save_openvino, trace_openvino
from ..inference.predictor import InferenceOptions, Predictor
from ..inference.tiling import tile_starts
from .files import ExportResult, check_target

log = logging.getLogger("unetzoo")

MAX_DICE_DROP = 0.01  # the largest drop of validation global Dice an INT8 export may have
CALIBRATION_IMAGES = 300  # NNCF's default subset size


class QuantizationError(UnetzooError):
    """The INT8 model loses more accuracy than allowed; nothing was written."""


@dataclass
class QuantizationReport:
    """Float and INT8 scores on the validation split (dataset-global and mean per image).

    `float` runs OpenVINO in float32; `int8` runs the quantised model in `int8_precision`
    (the precision `predict` uses for it by default: INT8 layers plus bf16 or fp32 for the
    rest). Drops are float minus INT8.
    """

    images: int
    split: str
    calibration_tiles: int
    float_dice: float
    float_iou: float
    int8_dice: float
    int8_iou: float
    float_dice_per_image: float
    int8_dice_per_image: float
    dice_drop: float
    iou_drop: float
    max_dice_drop: float
    int8_precision: str
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (f"validation ({self.images} {self.split} images): Dice {self.float_dice:.4f} "
                f"float -> {self.int8_dice:.4f} INT8 (drop {self.dice_drop:+.4f}, allowed "
                f"{self.max_dice_drop:g}); IoU {self.float_iou:.4f} -> {self.int8_iou:.4f} "
                f"(drop {self.iou_drop:+.4f})")


def _data(info: Checkpoint, checkpoint_path: Path, dataset: Path | str | None,
          csvfile: Path | str | None) -> tuple[Path, list[Pair], list[Pair], str]:
    """(dataset, training pairs, validation pairs, split name) of the run, as training
    assigned them (the run's csv, else its saved split.csv, else the seeded split)."""
    config = info.config
    if dataset is None:
        dataset = config.get("dataset")
        csvfile = csvfile or config.get("csvfile")
        run = run_of(checkpoint_path)
        if csvfile is None and run is not None and (run / SPLIT_FILE).is_file():
            csvfile = run / SPLIT_FILE
    if not dataset or not Path(dataset).is_dir():
        raise ConfigError(f"INT8 calibration and the accuracy check need the run's images: "
                          f"the checkpoint's dataset {dataset!r} is not here; pass "
                          "--dataset DIR (and --csvfile F)", checkpoint_path)
    root = Path(dataset)
    pairs = find_pairs(root, csvfile)
    train, val, test, _ = assign_splits(pairs, float(config.get("val_fraction", 0.1)),
                                        int(config.get("seed", 0)))
    split = "val"
    if not val:
        val, split = test, "test"
        log.info(f"{root}: no validation split; the INT8 accuracy check uses the test split")
    val = [p for p in val if p.labelled]
    if not train or not val:
        raise ConfigError("INT8 needs training images (calibration) and labelled validation "
                          f"images (accuracy check); found {len(train)} and {len(val)}", root)
    return root, train, val, split


class CalibrationTiles:
    """Up to `count` model inputs `1 x C x h x w` (float32) made from the training images
    exactly as `Predictor` makes them: each image normalised as a whole (the dataset's
    statistics, or for per-image and percentile normalisation the whole image's own,
    `Preprocessing.statistics`), then, in `resize` mode, resized whole to the patch size
    (`resize_image`), else cut into the predictor's sliding-window tiles (`tile_starts` at
    `overlap`; images no larger than the patch whole), of which one seeded tile per image
    is taken. A graph fixed to one input size (`fixed`) gets them zero-padded at the
    bottom and right, as `ExportedModule` pads them. Images are spread over the set and
    reused when there are fewer than `count`; they are read lazily each time NNCF
    iterates. (A crop normalised by its own statistics, as calibration did before, is not
    what the model sees: INT8 ranges would be fitted to other values.)
    """

    def __init__(self, pairs: list[Pair], info: Checkpoint, count: int, seed: int = 0,
                 overlap: float = InferenceOptions.overlap,
                 fixed: tuple[int, int] | None = None) -> None:
        self.pre = info.preprocessing
        self.images = [p.image for p in spread_sample(pairs, count)]
        self.count = count if len(self.images) < count else len(self.images)
        self.seed, self.overlap, self.fixed = seed, overlap, fixed

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for i in range(self.count):
            image = read_image(self.images[i % len(self.images)], self.pre.in_channels)
            tile = self.tile(image, rng)
            if self.fixed is not None:
                tile = pad_to(tile, *self.fixed)
            yield tile.numpy()

    def tile(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """One model input `1 x C x h x w` of `image` (`H x W x C` in [0, 1]), as the
        predictor makes it."""
        pre, size = self.pre, self.pre.img_size
        stats = pre.statistics(image)  # of the whole image, before tiling or resizing
        if pre.resize_mode == "resize":
            return resize_image(pre.to_tensor(image, stats)[None], size)
        height, width = image.shape[:2]
        th, tw = min(size, height), min(size, width)
        ys, xs = tile_starts(height, th, self.overlap), tile_starts(width, tw, self.overlap)
        y, x = ys[int(rng.integers(len(ys)))], xs[int(rng.integers(len(xs)))]
        return pre.to_tensor(image[y: y + th, x: x + tw], stats)[None]


FLOAT_TYPES = ("Multiply",)  # OpenVINO op types NNCF leaves in float (see quantize_graph)


def quantize_graph(graph: Any, tiles: CalibrationTiles) -> Any:
    """`graph` (an `openvino.Model`) quantised to INT8 by NNCF post-training quantisation
    (CPU target, default mixed preset) on `tiles`.

    Element-wise products (`FLOAT_TYPES`: attention gates' `x * alpha`, squeeze-excitation
    scaling) stay in float: quantising their inputs cost an Attention U-Net 0.18 of
    validation Dice on dsb2018_96 (0.865 float, 0.684 INT8; 0.863 with them in float),
    while convolutions carry almost all of the time. Plain U-Nets have no such product."""
    nncf = require("nncf")
    nncf.set_log_level(logging.ERROR)
    return nncf.quantize(graph, nncf.Dataset(tiles), subset_size=len(tiles),
                         target_device=nncf.TargetDevice.CPU,
                         ignored_scope=nncf.IgnoredScope(types=list(FLOAT_TYPES),
                                                         validate=False))


def _scores(graph: Any, precision: str, info: Checkpoint, fixed: tuple[int, int] | None,
            data: SegmentationDataset, progress: bool) -> dict[str, Any]:
    module = ExportedModule(openvino_runner(graph, precision),
                            info.model_spec["num_classes"], fixed, "int8 check")
    runtime = Runtime.resolve("cpu", precision, backend="openvino")
    predictor = Predictor(module, info.preprocessing, info.task, InferenceOptions(runtime))
    return evaluate(predictor, data, info.class_names, progress=progress).summary


def export_int8(model: nn.Module, info: Checkpoint, out: Path, checkpoint_path: Path,
                size: int | None = None, overwrite: bool = False,
                dataset: Path | str | None = None, csvfile: Path | str | None = None,
                accept_drop: bool = False, max_dice_drop: float | None = None,
                calibration_images: int | None = None, progress: bool = False
                ) -> ExportResult:
    """Quantise `model` to INT8 OpenVINO IR at `out` after an accuracy check.

    Args:
        model: the float32 model (eval mode) built from `info`.
        info: its checkpoint (config: dataset, csvfile, seed, val_fraction of the run).
        out: the `.xml` to write (with its `.bin`).
        checkpoint_path: the checkpoint file (its run folder may hold `split.csv`).
        size: trace size (default: the patch size).
        overwrite: replace an existing `out`.
        dataset, csvfile: override the run's data.
        accept_drop: write the model even when Dice drops by more than allowed.
        max_dice_drop: allowed drop of the validation global Dice (default `MAX_DICE_DROP`).
        calibration_images: calibration patches (default `CALIBRATION_IMAGES`).
        progress: progress bars during the evaluation.

    Returns:
        An `ExportResult` whose `quality` holds the `QuantizationReport`.

    Raises:
        QuantizationError: the Dice drop exceeds the threshold (nothing written).
        ConfigError: the data is missing, nncf or openvino not installed.
        RunError: `out` exists (without `overwrite`).
        ExportError: the float graph differs from PyTorch.
    """
    check_target("openvino", out, overwrite)
    require("nncf")
    start = time.perf_counter()
    allowed = MAX_DICE_DROP if max_dice_drop is None else max_dice_drop
    root, train, val, split = _data(info, checkpoint_path, dataset, csvfile)
    reading = run_reading(info.task, info.model_spec["num_classes"], root, val, info.config,
                          info.mask_reading)
    check_files(val)
    verify_pairs(val, reading)
    side = size or info.preprocessing.img_size
    graph, fixed, diff = trace_openvino(model, (side, side), where=str(out))
    tiles = CalibrationTiles(train, info, calibration_images or CALIBRATION_IMAGES,
                             fixed=fixed)
    log.info(f"INT8: calibrating on {len(tiles)} tiles of {len(tiles.images)} training "
             f"images of {root}, normalised and tiled as prediction does")
    quantised = quantize_graph(graph, tiles)
    data = SegmentationDataset(val, info.preprocessing, reading)
    int8_precision = Runtime.resolve("cpu", "auto", backend="openvino").precision
    base = _scores(graph, "fp32", info, fixed, data, progress)
    low = _scores(quantised, int8_precision, info, fixed, data, progress)
    report = QuantizationReport(
        images=len(val), split=split, calibration_tiles=len(tiles),
        float_dice=base["global"]["dice"], float_iou=base["global"]["iou"],
        int8_dice=low["global"]["dice"], int8_iou=low["global"]["iou"],
        float_dice_per_image=base["mean_over_images"]["dice"],
        int8_dice_per_image=low["mean_over_images"]["dice"],
        dice_drop=base["global"]["dice"] - low["global"]["dice"],
        iou_drop=base["global"]["iou"] - low["global"]["iou"],
        max_dice_drop=allowed, int8_precision=int8_precision, accepted=False)
    log.info(f"INT8: {report.format()}")
    if report.float_dice <= allowed:  # a drop can be no larger than the float Dice
        log.warning(f"INT8: the float model's validation Dice ({report.float_dice:.4f}) is "
                    f"within the allowed drop ({allowed:g}), so this check could not refuse "
                    f"any INT8 model; train longer or check the INT8 model on data the float "
                    f"model segments")
    if report.dice_drop > allowed and not accept_drop:
        raise QuantizationError(f"INT8 lowers the validation Dice by {report.dice_drop:.4f} "
                                f"(float {report.float_dice:.4f}, INT8 {report.int8_dice:.4f}; "
                                f"allowed {allowed:g}): not written; pass --accept-drop to "
                                "write it anyway", out)
    report.accepted = True
    save_openvino(quantised, export_metadata(info, fixed, {"int8": report.to_json()}), out)
    return ExportResult(out, "openvino", diff, fixed, time.perf_counter() - start,
                        quality=report.to_json())
