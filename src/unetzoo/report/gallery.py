"""Pictures for the report: a bounded set of images re-predicted from the checkpoint.

Evaluation scores every image but keeps no predictions; the report chooses images after
scoring (the worst and best by a metric, or every image of a small evaluation) and predicts
just those again with the evaluation's recorded inference options, checking each new
prediction's score against the one in `per_image.csv`. Each image becomes layers the page
stacks: the image (JPEG), the ground truth, each prediction and each error map (RGBA PNGs,
transparent where there is nothing), and for deep-supervised or attention models the side
outputs or attention maps (heat-map JPEGs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..artefacts.checkpoint import Checkpoint
from ..data.io import read_image
from ..data.layouts import Pair, find_pairs
from ..data.masks import MaskReading, load_target
from ..data.prepare import run_reading
from ..engine.inference.instance import activate
from ..engine.inference.predictor import InferenceOptions, Predictor
from ..errors import UnetzooError
from ..fileio import atomic_write
from ..instances.labels import object_maps
from ..instances.targets import Representation
from ..metrics import confusion_counts, headline
from ..runtime import Runtime
from ..task import Task, probabilities
from ..viz import ERROR_COLORS, FN, FP, TN, class_colors, error_codes, heatmap, to_display
from .objects import error_pixels, object_counts, object_error_layer, object_layer, score_image

log = logging.getLogger("unetzoo")

DISPLAY_MAX = 768  # longest side of the pictures on the page, in pixels
ZOOM_ABOVE = 384  # images whose longest side exceeds this also get a zoom on their errors
MISMATCH = 1e-3  # a re-predicted score further than this from the evaluation's is shown


@dataclass
class Source:
    """A model whose predictions are shown: a label for the page, the checkpoint, and the
    inference options its evaluation used."""

    label: str
    checkpoint: Checkpoint
    options: InferenceOptions


@dataclass
class ImageAssets:
    """The files of one image on the page (paths relative to the page) and what they show.

    width, height: of the pictures as written (the image scaled to at most DISPLAY_MAX).
    size: the image's own (height, width) in pixels.
    preds / errors: per source label. maps: per source label, (title, file) pairs.
    scores: per source label, the re-predicted value of the ranking metric.
    zoom: (x0, y0, x1, y1) as fractions of the image: where errors are densest, or None.
    objects: an instance model's, per source label: how many objects of each kind the
        error picture outlines (`report.objects.object_counts`); empty for other tasks.
    """

    image: str
    width: int
    height: int
    size: tuple[int, int]
    truth: str
    preds: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    maps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    zoom: tuple[float, float, float, float] | None = None
    objects: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "width": self.width, "height": self.height,
                "size": list(self.size), "truth": self.truth, "preds": self.preds,
                "errors": self.errors,
                "maps": {k: [list(m) for m in v] for k, v in self.maps.items()},
                "scores": self.scores, "zoom": list(self.zoom) if self.zoom else None,
                "objects": self.objects}


def rank(rows: Sequence[dict[str, Any]], metric: str) -> list[int]:
    """Row indices from worst to best by `metric` (higher is better); missing or NaN values
    count as worst; ties keep the file order."""
    def key(i: int) -> float:
        value = rows[i].get(metric)
        return -math.inf if not isinstance(value, (int, float)) or math.isnan(value) \
            else float(value)
    return sorted(range(len(rows)), key=key)


def choose_images(rows: Sequence[dict[str, Any]], metric: str, gallery: int,
                  overlays: int) -> tuple[list[int], list[int], list[int]]:
    """(worst, best, every row index that gets pictures): the `gallery` worst and the
    `gallery` best rows by `metric`, disjoint (with fewer than 2 x `gallery` rows, the worse
    half and the better half), and every row when there are at most `overlays` rows, else
    just the gallery's."""
    order = rank(rows, metric)
    shown = min(gallery, (len(rows) + 1) // 2)  # a small evaluation: half worst, half best
    worst = order[:shown]
    best = [i for i in reversed(order) if i not in set(worst)][:gallery]
    pictured = list(range(len(rows))) if len(rows) <= overlays else sorted({*worst, *best})
    return worst, best, pictured


def error_zoom(codes: np.ndarray) -> tuple[float, float, float, float] | None:
    """The square window (a third of the longer side, at least 96 pixels) holding the most
    false positives and negatives, as fractions (x0, y0, x1, y1); None for small images or
    when there is no error."""
    height, width = codes.shape
    if max(height, width) <= ZOOM_ABOVE:
        return None
    wrong = ((codes == FP) | (codes == FN)).astype(np.int64)
    if not wrong.any():
        return None
    side = min(height, width, max(96, max(height, width) // 3))
    integral = np.pad(wrong.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
            + integral[:-side, :-side])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return x / width, y / height, (x + side) / width, (y + side) / height


class SideOutputs(nn.Module):
    """The extra outputs of a model, as one tensor `B x N x H x W` a `Predictor` can tile:
    the side outputs of a deep-supervised model (`kind="side"`: the outputs after the main
    one that its training-mode forward returns, N = outputs x classes, logits) or the
    attention maps of a model with `attention_maps` (`kind="attention"`: one map per gate
    resampled to the input size, values in [0, 1]).

    Side outputs are taken with only the top module in training mode: every layer (batch
    norm, dropout) stays in eval mode, so they are the outputs the trained network gives.
    """

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model = model
        self.kind = kind
        self.in_channels = int(getattr(model, "in_channels", 3))
        classes = int(getattr(model, "num_classes", 1))
        if kind == "side":
            self.count = len(getattr(model, "output_weights", None) or ()) - 1
            self.num_classes = self.count * classes
        else:
            self.count = len(model.gates)  # type: ignore[arg-type]
            self.num_classes = self.count

    @staticmethod
    def kinds(model: nn.Module) -> list[str]:
        """The kinds of extra outputs `model` has: side, attention, both or none."""
        found = []
        if len(getattr(model, "output_weights", None) or ()) > 1:
            found.append("side")
        if hasattr(model, "attention_maps") and len(getattr(model, "gates", ())):
            found.append("attention")
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "attention":
            maps = self.model.attention_maps(x)  # type: ignore[operator]
            return torch.cat([F.interpolate(m.float(), size=x.shape[-2:], mode="bilinear",
                                            align_corners=False) for m in maps], dim=1)
        self.model.training = True  # the top module only: its forward returns every output
        try:
            outputs = self.model(x)
        finally:
            self.model.training = False
        return torch.cat([o.float() for o in outputs[1:]], dim=1)


def _map_titles(model: nn.Module, kind: str, count: int) -> list[str]:
    if kind == "attention":  # coarse to fine
        return [f"gate {i + 1}" + (" (coarse)" if i == 0 else " (fine)" if i == count - 1
                                   else "") for i in range(count)]
    return [f"side {i + 1}" for i in range(count)]


def _foreground(values: torch.Tensor, task: Task,
                representation: Representation | None = None) -> np.ndarray:
    """Foreground probability `H x W` of one output's logits `K x H x W` (an instance
    model's: its representation's channels activated, read as `instances.labels.object_maps`
    reads them)."""
    if representation is not None:
        return object_maps(activate(values[None], representation)[0].numpy(),
                           representation)[0]
    probs = probabilities(values[None], task)[0]
    if task == "multiclass":
        return (1 - probs[0]).numpy()
    return probs.max(0).values.numpy()


class AssetWriter:
    """Writes the pictures of one page into `folder`; the page refers to them as
    `<url>/<file name>` (the folder's final name relative to the page)."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url

    def _write(self, name: str, image: Image.Image, fmt: str) -> str:
        path = self.folder / name
        options: dict[str, Any] = {"quality": 88} if fmt == "JPEG" else {"compress_level": 6}
        atomic_write(path, lambda fh: image.save(fh, format=fmt, **options))
        return f"{self.url}/{name}"

    @staticmethod
    def scaled(image: Image.Image, size: tuple[int, int]) -> Image.Image:
        return image if image.size == size else image.resize(size, Image.Resampling.BOX)

    def image(self, stem: str, rgb: np.ndarray, size: tuple[int, int]) -> str:
        return self._write(f"{stem}.jpg", self.scaled(Image.fromarray(rgb), size), "JPEG")

    def layer(self, stem: str, rgba: np.ndarray, size: tuple[int, int]) -> str:
        return self._write(f"{stem}.png", self.scaled(Image.fromarray(rgba, "RGBA"), size),
                           "PNG")

    def heat(self, stem: str, values: np.ndarray, size: tuple[int, int]) -> str:
        return self._write(f"{stem}.jpg", self.scaled(Image.fromarray(heatmap(values)), size),
                           "JPEG")


def label_layer(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGBA `H x W x 4`: class colours where a class (> 0) is, transparent elsewhere; a
    multilabel `K x H x W` stack shows, per pixel, the colour of its highest label."""
    if labels.ndim == 3:  # label k (0-based) takes colour k + 1, as in the class legend
        present = labels == 1
        index = np.where(present.any(0), labels.shape[0] - np.argmax(present[::-1], 0), 0)
    else:
        index = np.where(labels == 255, 0, labels)
    rgba = np.zeros((*index.shape, 4), np.uint8)
    rgba[..., :3] = colors[index % len(colors)]
    rgba[..., 3] = np.where(index > 0, 255, 0)
    return rgba


def error_layer(codes: np.ndarray) -> np.ndarray:
    """RGBA `H x W x 4` of `viz.error_codes`: coloured errors and hits, transparent TN."""
    rgba = np.zeros((*codes.shape, 4), np.uint8)
    rgba[..., :3] = ERROR_COLORS[codes]
    rgba[..., 3] = np.where(codes == TN, 0, 255)
    return rgba


def _display_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, DISPLAY_MAX / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _score(pred: np.ndarray, target: np.ndarray, task: Task, classes: int, metric: str
           ) -> float:
    counts = confusion_counts(torch.from_numpy(pred.astype(np.int64))[None],
                              torch.from_numpy(target.astype(np.int64))[None], task, classes)
    return float(headline(counts, task)[metric][0])


def dataset_pairs(dataset: str | Path, csvfile: str | Path | None, split: str | None,
                  names: Sequence[str]) -> dict[str, Pair]:
    """The labelled pairs named `names` (image stems) of `split` ("all" or None: any) in
    `dataset`."""
    split = None if split == "all" else split
    wanted = set(names)
    found: dict[str, Pair] = {}
    for pair in find_pairs(dataset, csvfile):
        if pair.name in wanted and pair.labelled and (split is None or pair.split in
                                                       (None, split)):
            found.setdefault(pair.name, pair)
    return found


def render_images(sources: Sequence[Source], pairs: dict[str, Pair], reading: MaskReading,
                  names: Sequence[str], writer: AssetWriter, maps_for: set[str],
                  metric: str = "dice", strict: bool = False) -> dict[str, ImageAssets]:
    """Predict `names` with every source and write their pictures.

    An instance model's pictures are objects: the true and the predicted objects each in
    their own colour, and the objects outlined by their errors at IoU 0.5
    (`report.objects.object_error_layer`: matched, extra, missed, split, merged), scored as
    the evaluation scored them (void pixels of the truth left out).

    Args:
        sources: the models to show (one for a report, one per run for a comparison); the
            first decides the task and colours.
        pairs: image name -> labelled pair (see `dataset_pairs`).
        reading: turns the stored masks into targets (`reading_for`; an instance model's:
            int32 label images, -1 on void pixels).
        names: the images to show, in page order; names without a pair are skipped.
        writer: where the pictures go.
        maps_for: names that also get side outputs / attention maps (the gallery's).
        metric: the per-image metric re-computed for each prediction (a column of
            `per_image.csv`).
        strict: an instance evaluation's matching rule (IoU > t when True, else >= t), as
            its `metrics.json` records it.

    Returns:
        Image name -> its assets, for the names that could be read.
    """
    first = sources[0].checkpoint
    task: Task = first.task
    instance = task == "instance"
    classes = int(first.model_spec["num_classes"])
    colors = class_colors(max(classes, 2) + 1, first.class_colors)
    predictors = [Predictor.from_checkpoint(s.checkpoint, s.options) for s in sources]
    extra = [_extra_predictors(source, task) for source in sources]
    out: dict[str, ImageAssets] = {}
    for number, name in enumerate(names):
        pair = pairs.get(name)
        if pair is None:
            continue
        stem = f"{number:05d}"
        try:
            shown = read_image(pair.image)
            target = load_target(pair, reading, shown.shape[:2])
        except UnetzooError as exc:
            log.warning(f"report: {exc}; no pictures for {name}")
            continue
        if target.ndim == 3:
            target = target.transpose(2, 0, 1)
        height, width = shown.shape[:2]
        size = _display_size(height, width)
        truth = object_layer(target, size) if instance else label_layer(target, colors)
        assets = ImageAssets(writer.image(stem, to_display(shown), size), size[0], size[1],
                             (height, width), writer.layer(f"{stem}_truth", truth, size))
        zoom_codes = None
        for index, (source, predictor) in enumerate(zip(sources, predictors, strict=True)):
            image = read_image(pair.image, source.checkpoint.preprocessing.in_channels)
            pred = np.asarray(predictor.labels(image))
            tag = f"{stem}_{index}"
            if instance:
                errors, score, pred = score_image(target, pred, metric, strict)
                codes = error_pixels(np.where(target < 0, 0, target), pred, errors)
                pred_layer = object_layer(pred, size)
                error_rgba = object_error_layer(target, pred, errors, size)
                assets.objects[source.label] = object_counts(errors, target, pred)
            else:
                codes = error_codes(target, pred)
                pred_layer = label_layer(pred, colors)
                error_rgba = error_layer(codes)
                score = _score(pred, target, task, classes, metric)
            zoom_codes = codes if zoom_codes is None else zoom_codes | codes
            assets.preds[source.label] = writer.layer(f"{tag}_pred", pred_layer, size)
            assets.errors[source.label] = writer.layer(f"{tag}_error", error_rgba, size)
            assets.scores[source.label] = score
            if name in maps_for and extra[index]:
                assets.maps[source.label] = _maps(extra[index], image, task,
                                                  int(source.checkpoint.model_spec[
                                                      "num_classes"]), writer, tag, size,
                                                  _representation(predictor))
        assets.zoom = error_zoom(zoom_codes) if zoom_codes is not None else None
        out[name] = assets
    return out


def _representation(predictor: Predictor) -> Representation | None:
    return predictor.instance.representation if predictor.instance is not None else None


def _extra_predictors(source: Source, task: Task) -> list[tuple[str, Predictor, list[str]]]:
    """Predictors of a source's side outputs and attention maps (logits only: an instance
    model's run as multilabel outputs, decoded by `_foreground`)."""
    model = source.checkpoint.build_model()
    found = []
    options = InferenceOptions(Runtime.resolve(precision=source.options.runtime.precision),
                               batch_size=source.options.batch_size,
                               overlap=source.options.overlap)
    for kind in SideOutputs.kinds(model):
        wrapper = SideOutputs(model, kind)
        found.append((kind, Predictor(wrapper, source.checkpoint.preprocessing,
                                      "multilabel" if task == "instance" else task, options),
                      _map_titles(model, kind, wrapper.count)))
    return found


def _maps(extra: list[tuple[str, Predictor, list[str]]], image: np.ndarray, task: Task,
          classes: int, writer: AssetWriter, tag: str, size: tuple[int, int],
          representation: Representation | None = None) -> list[tuple[str, str]]:
    written = []
    for kind, predictor, titles in extra:
        values = torch.as_tensor(predictor.logits(image))
        for i, title in enumerate(titles):
            if kind == "side":
                plane = _foreground(values[i * classes: (i + 1) * classes], task,
                                    representation)
            else:
                plane = values[i].numpy()
            written.append((title, writer.heat(f"{tag}_{kind}{i + 1}", plane, size)))
    return written


def source_for(checkpoint: Checkpoint, recorded: dict[str, Any] | None, label: str,
               config: dict[str, Any] | None = None) -> Source:
    """A `Source` predicting as the evaluation did: its recorded inference options, else
    the defaults of the test evaluation after training (the run's precision)."""
    if recorded:
        options = InferenceOptions.from_dict(recorded)
    else:
        precision = (config or checkpoint.config).get("precision", "auto")
        try:
            runtime = Runtime.resolve(precision=precision)
        except UnetzooError:
            runtime = Runtime.resolve()
        options = InferenceOptions(runtime, batch_size=int((config or {}).get("batch", 4)))
    return Source(label, checkpoint, options)


def reading_for(checkpoint: Checkpoint, dataset: str | Path, pairs: dict[str, Pair]
                ) -> MaskReading:
    """How the evaluation read the masks of `pairs` (`data.prepare.run_reading`: the run's
    recorded reading, class map and ignore value)."""
    return run_reading(checkpoint.task, int(checkpoint.model_spec["num_classes"]), dataset,
                       list(pairs.values()), checkpoint.config, checkpoint.mask_reading)
