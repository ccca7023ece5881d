"""Evaluate a predictor on a dataset: per-image and summarised metrics, speed, overlays,
and (for validation) the loss; a trained run's checkpoint re-applies the run's mask
reading."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..artefacts.checkpoint import Checkpoint
from ..artefacts.references import ModelReference, resolve_model
from ..artefacts.runs import DATASET_FILE, SPLIT_FILE
from ..data.dataset import (
    SegmentationDataset,
    channel_evidence,
    check_files,
    spread_sample,
    verify_pairs,
)
from ..data.digests import unpack_digests
from ..data.input_stats import SAMPLE_IMAGES
from ..data.io import read_image
from ..data.layouts import Pair, read_split_csv
from ..data.prepare import TrainData, labelled_split, run_reading
from ..data.split_record import read_split_record, training_overlap
from ..errors import DataError
from ..fileio import atomic_write_text
from ..instances.matching import InstanceScores
from ..metrics import METRIC_NAMES, MetricAccumulator
from ..progress import progress_bar
from ..task import IGNORE_INDEX, labels_from_logits
from ..viz import class_colors, comparison_panel, save_png
from .distributed import Distributed
from .inference.instance import activate
from .inference.opening import model_metadata
from .inference.predict import shift_monitor
from .inference.predictor import InferenceOptions, Predictor

log = logging.getLogger("unetzoo")


@dataclass
class EvaluationResult:
    """Summary (mean over images and dataset-global), per-image rows and throughput."""

    summary: dict[str, Any]
    per_image: list[dict[str, Any]]
    fps: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    counts: torch.Tensor | None = field(default=None, repr=False)  # image, class: TP FP FN TN
    objects: InstanceScores | None = field(default=None, repr=False)  # an instance model's
    losses: list[float] | None = field(default=None, repr=False)  # per image, when asked

    @property
    def loss(self) -> float | None:
        """Mean loss over the images (when evaluated with a loss), else None."""
        return float(np.mean(self.losses)) if self.losses else None

    def to_json(self) -> dict[str, Any]:
        out = {**self.summary, "fps": self.fps, "seconds": self.seconds, **self.extra}
        return out if self.loss is None else {**out, "loss": self.loss}

    def write(self, folder: Path) -> None:
        """metrics.json and per_image.csv into `folder`, atomically."""
        atomic_write_text(folder / "metrics.json", json.dumps(self.to_json(), indent=2) + "\n")
        out = io.StringIO()
        columns = ["image", *METRIC_NAMES]
        for row in self.per_image:  # an instance model's rows add its object scores
            columns += [k for k in row if k not in columns]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.per_image:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
        atomic_write_text(folder / "per_image.csv", out.getvalue())


def _unbatched(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


def evaluate(predictor: Predictor, dataset: SegmentationDataset, class_names: Sequence[str],
             debug_dir: Path | None = None, workers: int = 0, progress: bool = True,
             class_colors_given: Sequence[Sequence[int]] | None = None,
             loss: nn.Module | None = None) -> EvaluationResult:
    """Predict every image at its full size and score it against its mask.

    FPS counts images per second of model time (tiling included), excluding file reading.
    With `debug_dir`, writes an image | ground truth | prediction panel per image there (the
    image as read: `dataset` is set to keep its pixels).
    With `loss` (validation), each image's loss on the whole-image logits is kept too
    (`EvaluationResult.loss` is their mean); the predictor must then run without TTA.
    Progress: a bar on a terminal, else one line at the end (see `unetzoo.progress`).
    An instance model is scored as objects (`evaluate_instances`).
    """
    if predictor.instance is not None:
        return evaluate_instances(predictor, dataset, debug_dir, workers, progress, loss)
    num_classes = predictor.model_num_classes
    metrics = MetricAccumulator(predictor.task, num_classes, class_names)
    colors = class_colors(max(num_classes, 2) + 1, class_colors_given)
    predictor.model_seconds = 0.0
    predictor.emptied = 0
    losses: list[float] | None = [] if loss is not None else None
    start = time.perf_counter()
    dataset.keep_pixels = dataset.keep_pixels or debug_dir is not None
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=_unbatched)
    for sample in progress_bar(loader, "evaluate", "image", enabled=progress, summary=True):
        target = sample["mask"]
        if loss is not None and losses is not None:
            logits = predictor.logits(sample["image"])
            with torch.no_grad():
                losses.append(float(loss(logits[None], target[None])))
            pred = predictor.postprocess(labels_from_logits(
                logits[None], predictor.task, predictor.options.threshold)[0].to(torch.uint8))
        else:
            pred = predictor.labels(sample["image"])
        metrics.update(pred[None], target[None], [sample["name"]])
        if debug_dir is not None:
            panel = comparison_panel(sample["pixels"].numpy(), target.numpy(), pred.numpy(), colors,
                                     binary=predictor.task == "binary")
            save_png(debug_dir / f"{sample['name']}.png", panel)
    seconds = time.perf_counter() - start
    images = len(metrics.names)
    if warning := predictor.options.postprocess.emptied_warning(predictor.emptied, images):
        log.warning(warning)
    fps = images / predictor.model_seconds if predictor.model_seconds > 0 else float("nan")
    return EvaluationResult(metrics.summary(), metrics.per_image(), fps, seconds,
                            counts=metrics.stacked(), losses=losses)


def instance_headline(scores: dict[str, Any], pooled: bool = False) -> dict[str, float]:
    """The object scores shown beside the pixel ones (from `InstanceScores.summary()`):
    ap50 (AP at IoU 0.5), map (the DSB mean AP over IoU 0.5:0.95), pq, aji; per image
    mean, or `pooled`."""
    part = scores["pooled" if pooled else "mean_over_images"]
    ap50 = next(t["ap"] for t in part["per_threshold"] if abs(t["threshold"] - 0.5) < 1e-9)
    return {"ap50": ap50, "map": part["mean_ap"], "pq": part["pq"], "aji": part["aji"]}


def evaluate_instances(predictor: Predictor, dataset: SegmentationDataset,
                       debug_dir: Path | None = None, workers: int = 0, progress: bool = True,
                       loss: nn.Module | None = None) -> EvaluationResult:
    """Score an instance model's objects (`instances.matching`: AP at IoU 0.5..0.95, mean AP,
    PQ, AJI, splits and merges, per image and pooled) and its foreground as pixels (Dice,
    IoU, ... of objects against background). Void pixels of the truth (`IGNORE_LABEL`) are
    left out of both: objects predicted there are removed before matching.

    With `loss` (validation) each image's loss on its encoded targets is kept (the predictor
    runs without TTA). With `debug_dir`, a panel per image (image | true objects | predicted
    objects | errors).
    """
    assert predictor.instance is not None
    decoding = predictor.instance
    metrics = MetricAccumulator("binary", 1, ("object",))
    scores = InstanceScores()
    colors = class_colors(3)
    predictor.model_seconds = 0.0
    losses: list[float] | None = [] if loss is not None else None
    start = time.perf_counter()
    dataset.keep_pixels = dataset.keep_pixels or debug_dir is not None
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=_unbatched)
    for sample in progress_bar(loader, "evaluate", "image", enabled=progress, summary=True):
        if loss is not None and losses is not None:
            logits = predictor.logits(sample["image"])
            with torch.no_grad():
                losses.append(float(loss(logits[None], sample["mask"][None])))
            outputs = activate(logits[None], decoding.representation)[0]
        else:
            outputs = predictor.probabilities(sample["image"])
        pred = decoding.decode(np.asarray(outputs), sample["name"])
        # the labels (without a target encoder, as for `eval`, they are the mask itself)
        true = sample.get("labels", sample["mask"]).numpy().astype(np.int64)
        void = true < 0
        true[void] = 0
        pred[void] = 0
        scores.update(true, pred, sample["name"])
        target = torch.from_numpy((true > 0).astype(np.int64))
        target[torch.from_numpy(void)] = IGNORE_INDEX
        metrics.update(torch.from_numpy(pred > 0).to(torch.uint8)[None], target[None],
                       [sample["name"]])
        if debug_dir is not None:
            panel = comparison_panel(sample["pixels"].numpy(), (true > 0).astype(np.uint8),
                                     (pred > 0).astype(np.uint8), colors, binary=True)
            save_png(debug_dir / f"{sample['name']}.png", panel)
    seconds = time.perf_counter() - start
    images = len(metrics.names)
    fps = images / predictor.model_seconds if predictor.model_seconds > 0 else float("nan")
    return instance_result(metrics, scores, fps, seconds, losses)


def instance_result(metrics: MetricAccumulator, scores: InstanceScores, fps: float,
                    seconds: float, losses: list[float] | None) -> EvaluationResult:
    """An instance model's `EvaluationResult`: the foreground's pixel scores with the
    object scores beside them (`instance_headline`), the whole object summary under
    `summary["instances"]` (with its conventions in words), one row per image with both."""
    objects = scores.summary()
    summary = metrics.summary()
    summary["mean_over_images"].update(instance_headline(objects))
    summary["global"].update(instance_headline(objects, pooled=True))
    summary["instances"] = objects
    rows = []
    for pixels, row in zip(metrics.per_image(), scores.per_image(), strict=True):
        rows.append({**pixels, **{k: v for k, v in row.items() if k != "name"}})
    return EvaluationResult(summary, rows, fps, seconds, counts=metrics.stacked(),
                            objects=scores, losses=losses)


def format_summary(result: EvaluationResult, title: str = "") -> str:
    """A console table: each metric as mean over images and dataset-global."""
    mean = result.summary["mean_over_images"]
    glob = result.summary["global"]
    lines = [title] if title else []
    lines.append(f"{'metric':<12} {'mean/image':>10} {'global':>10}")
    for name in METRIC_NAMES:
        lines.append(f"{name:<12} {mean[name]:>10.4f} {glob[name]:>10.4f}")
    per_class = result.summary.get("per_class", {})
    if len(per_class) > 2:
        lines.append(f"{'class':<16} {'dice':>8} {'iou':>8}  (global)")
        for name, scores in per_class.items():
            if scores.get("absent"):  # as on the report page: no score, rather than 1.0000
                lines.append(f"{name:<16} {'-':>8} {'-':>8}  absent: in no mask, never "
                             f"predicted; left out of the means")
            else:
                lines.append(f"{name:<16} {scores['dice']:>8.4f} {scores['iou']:>8.4f}")
    if "instances" in result.summary:
        objects = result.summary["instances"]
        lines.append(f"{'objects':<12} {'mean/image':>10} {'pooled':>10}  ({objects['n_true']:,} "
                     f"true, {objects['n_pred']:,} predicted)")
        for key, name in (("ap50", "AP@0.5"), ("map", "mAP .5:.95"), ("pq", "PQ"),
                          ("aji", "AJI")):
            lines.append(f"{name:<12} {mean[key]:>10.4f} {glob[key]:>10.4f}")
        pooled = objects["pooled"]
        lines.append(f"{pooled['splits']:.0f} true objects split, {pooled['merges']:.0f} "
                     f"predictions merging several, {pooled['missed']:.0f} missed, "
                     f"{pooled['extra']:.0f} extra; AP = TP/(TP+FP+FN), a match needs IoU "
                     f"{objects['conventions']['threshold_rule']} t (metrics.json: "
                     "conventions)")
    lines.append(f"{result.summary['images']} images, {result.fps:.1f} images/s model "
                 f"throughput (FPS), {result.seconds:.1f} s in all")
    return "\n".join(lines)


def _held_out_of_run(reference: ModelReference, config: dict[str, Any], dataset: Path | str,
                     pairs: Sequence[Pair]) -> list[Pair] | None:
    """The test images of the split a run made for `dataset` (saved as `<run>/split.csv`
    beside `<run>/models/`), when the run trained on this dataset folder (the absolute path
    in `<run>/dataset.json`, else the run `config`'s, as typed) and trained or
    validated on some of `pairs`: a dataset without splits, evaluated whole, would score the
    checkpoint on its own training images. None when the run trained elsewhere or used none
    of these images, and when no split.csv is beside a checkpoint that trained here (an
    exported file moved away: said in a warning).

    Raises:
        DataError: the run trained on some of these images and set none apart for testing.
    """
    checkpoint_path, run = reference.path, reference.run
    saved = run / SPLIT_FILE if run is not None else None
    root = Path(dataset).resolve()
    # the config holds the dataset as typed (relative to where `train` ran); dataset.json
    # beside split.csv holds its absolute path (runs since it was recorded)
    try:
        where = json.loads((run / DATASET_FILE).read_text()).get("dataset_path")  # type: ignore[operator]
    except (OSError, ValueError, AttributeError, TypeError):  # none, unreadable, no run
        where = None
    if not any(t and Path(t).resolve() == root for t in (where, config.get("dataset"))):
        return None
    if saved is None or not saved.is_file():
        split = f"its split {config['csvfile']}" if config.get("csvfile") else "RUN/split.csv"
        log.warning(f"{dataset}: no split information, and the model was trained on this "
                    f"folder (its config says) but no split.csv of its run is beside "
                    f"{checkpoint_path}: every image is evaluated, its training images among "
                    f"them; pass --csvfile with {split} to evaluate the held-out images")
        return None
    # rows whose files are gone since training are left out (collected, not raised)
    assigned = {p.image.resolve(): p.split for p in read_split_csv(root, saved, problems=[])}
    splits = [assigned.get(p.image.resolve()) for p in pairs]
    used = sum(s in ("train", "val") for s in splits)
    if not used:
        return None
    held_out = [p for p, s in zip(pairs, splits, strict=True) if s == "test"]
    if not held_out:
        raise DataError(f"has no split information, and {used} of its {len(pairs)} images "
                        f"trained or validated this checkpoint ({saved}) with none set apart "
                        "for testing; pass --split all to evaluate every image anyway, or "
                        "--csvfile with a split", dataset)
    images = f"{len(held_out)} image" + ("s" if len(held_out) != 1 else "")
    log.info(f"{dataset}: no split information; {used} of its {len(pairs)} images trained "
             f"or validated this checkpoint, so the test split the run made ({saved}) is "
             f"evaluated: {images} (--split all evaluates every image)")
    return held_out


def _input_shift(checkpoint: Checkpoint, pairs: Sequence[Pair]) -> str | None:
    """One line naming scored images far from the checkpoint's training images (up to
    `input_stats.SAMPLE_IMAGES` of them, spread through the split), or None."""
    monitor = shift_monitor(checkpoint)
    if monitor.stats is None:
        return None
    for pair in spread_sample(list(pairs), SAMPLE_IMAGES):
        try:
            image = read_image(pair.image, checkpoint.preprocessing.in_channels)
        except DataError:
            continue  # evaluation names it
        monitor.observe(image, pair.image.name, pair.image)
    return monitor.summary()


def _training_overlap(reference: ModelReference, checkpoint: Checkpoint, dataset: Path | str,
                      pairs: Sequence[Pair]) -> str | None:
    """One line naming the scored images the checkpoint trained or validated on (by file
    and by content), from its run's split record, else from the digests it carries; None
    when there are none or nothing to tell it by."""
    record = None
    run = reference.run
    if run is not None and (run / SPLIT_FILE).is_file():
        try:
            where = json.loads((run / DATASET_FILE).read_text()).get("dataset_path")
        except (OSError, ValueError, AttributeError):
            where = None
        root = where or checkpoint.config.get("dataset")
        if root and Path(root).is_dir():
            record = read_split_record(root, run / SPLIT_FILE)
    digests: frozenset[str] = frozenset()
    if record is None and checkpoint.fit_digests is not None:
        digests = unpack_digests(bytes(checkpoint.fit_digests.numpy()))
    if record is None and not digests:
        return None
    return training_overlap(pairs, record, digests=digests, root=Path(dataset))


def evaluate_checkpoint(checkpoint_path: Path | str, dataset: Path | str,
                        csvfile: Path | str | None = None, split: str | None = None,
                        out_dir: Path | str | None = None, debug: bool = False,
                        options: InferenceOptions | None = None, workers: int = 0,
                        progress: bool = True) -> EvaluationResult:
    """Evaluate a trained checkpoint (or a file `unetzoo export` wrote) on a dataset split:
    Dice, IoU, precision, recall, specificity, F1, accuracy and mDice per image, averaged,
    and dataset-global.

    The masks are read as the run read its training masks (its task, classes, stored values
    per class, class map, --instances, --mask-threshold; binary foreground levels are
    read from these masks), and a sample is encoded before anything runs.

    Args:
        checkpoint_path: a unetzoo checkpoint (best.pt, epoch_last.pt), a training run's
            folder (its models/best.pt), or an exported file (.onnx, .xml, INT8 included,
            .torchscript) that carries its checkpoint.
        dataset: the dataset folder (any layout `train` reads).
        csvfile: a CSV split relative to `dataset` (default: the layout's splits).
        split: train, val or test; None: the test split when the dataset has splits, else
            the test split a run made for it when the checkpoint's run trained on some of
            its images (`<run>/split.csv`), else every image (`extra["split"]` says "all");
            "all": every image.
        out_dir: where metrics.json, per_image.csv and (with `debug`) overlays/ go, `{split}`
            replaced by the split evaluated ("all" for every image); None writes nothing.
        debug: write an image | ground truth | prediction panel per image.
        options: runtime and backend (default `auto`: OpenVINO where installed, converted
            once and cached; see `Predictor.open`), tiling, TTA and post-processing.
        workers: data-loading processes.
        progress: a progress bar on a terminal (else one line when done).

    Returns:
        The EvaluationResult: `summary` ({"mean_over_images": ..., "global": ...,
        "per_class": ..., "images": N}), per-image rows, FPS, seconds, and `extra` with the
        checkpoint, dataset, split evaluated ("all" for every image), runtime, the masks' and
        the images' reading (`masks`, `image_channels`: `channel_evidence`).

    Raises:
        CheckpointError: the checkpoint cannot be read. DataError: a split that does not
            exist (or a named split on a dataset without splits), a dataset without splits
            whose images trained the checkpoint with none kept for testing, images without masks,
            or masks that do not fit the run's task and classes, naming the file.

    Example:
        >>> result = evaluate_checkpoint("runs/unet/models/best.pt", "data/nuclei",
        ...                              "split.csv", split="test")  # doctest: +SKIP
        >>> round(result.summary["global"]["dice"], 3)  # doctest: +SKIP
        0.874
    """
    reference = resolve_model(checkpoint_path)
    checkpoint = model_metadata(reference)  # the data are checked before a model converts
    pairs, used_split = labelled_split(dataset, csvfile, split)
    held_out = None
    if split is None and used_split is None:
        held_out = _held_out_of_run(reference, checkpoint.config, dataset, pairs)
    if held_out is not None:
        pairs, used_split = held_out, "test"
    overlap = _training_overlap(reference, checkpoint, dataset, pairs)
    if overlap:
        log.warning(overlap)
    reading = run_reading(checkpoint.task, checkpoint.model_spec["num_classes"], dataset, pairs,
                          checkpoint.config, checkpoint.mask_reading)
    verify_pairs(pairs, reading)  # before a checkpoint is converted for its backend
    images = channel_evidence(check_files(pairs), checkpoint.preprocessing.in_channels)
    log.info(f"images: {images}")
    shifted = _input_shift(checkpoint, pairs)
    if shifted:
        log.warning(shifted)
    predictor = Predictor.open(reference, options, checkpoint)
    data = SegmentationDataset(pairs, checkpoint.preprocessing, reading)
    out = Path(str(out_dir).replace("{split}", used_split or "all")) if out_dir else None
    result = evaluate(predictor, data, checkpoint.class_names,
                      debug_dir=out / "overlays" if out and debug else None, workers=workers,
                      progress=progress, class_colors_given=checkpoint.class_colors)
    result.extra = {"checkpoint": str(reference.path), "dataset": str(dataset),
                    "csvfile": str(csvfile) if csvfile else None,
                    "split": used_split or "all", "image_channels": images,
                    "masks": reading.evidence,
                    "runtime": predictor.runtime.describe(),
                    "inference": predictor.options.to_dict(), "out": str(out) if out else None}
    if overlap:
        result.extra["overlap"] = overlap
    if shifted:
        result.extra["input_shift"] = shifted
    if split is None and used_split is None:
        result.extra["note"] = (f"the dataset has no split information: all {len(pairs)} "
                                "images were evaluated")
    elif held_out is not None:
        result.extra["note"] = ("the dataset has no split information: the test split the "
                                "run made was evaluated (--split all evaluates every image)")
    if out:
        result.write(out)
    return result


def evaluate_sharded(context: Distributed, predictor: Predictor, data: TrainData,
                     pairs: list[Pair], class_names: Sequence[str], workers: int = 0,
                     progress: bool = True, loss: nn.Module | None = None) -> EvaluationResult:
    """Evaluate `pairs` split across the ranks (image i on rank i mod N) and merge the
    confusion counts (and, with `loss`, the per-image losses) in the original order, so
    that every metric, dataset-global Dice included, equals a single-process evaluation
    exactly. Every rank gets the result."""
    if not context.enabled:
        return evaluate(predictor, data.dataset(pairs), class_names, workers=workers,
                        progress=progress, loss=loss)
    shard = pairs[context.rank::context.world_size]
    local = None
    if shard:
        result = evaluate(predictor, data.dataset(shard), class_names, workers=workers,
                          progress=progress and context.is_main, loss=loss)
        names = [row["image"] for row in result.per_image]
        objects = result.objects.counts() if result.objects is not None else None
        local = (result.counts, names, predictor.model_seconds, result.seconds,
                 result.summary.get("confusion_matrix"), result.losses, objects)
    parts = context.gather(local)
    instance = predictor.instance is not None
    metrics = MetricAccumulator("binary", 1, ("object",)) if instance else \
        MetricAccumulator(predictor.task, predictor.model_num_classes, class_names)
    scores = InstanceScores() if instance else None
    losses: list[float] | None = [] if loss is not None else None
    for index in range(len(pairs)):
        counts, names, _, _, _, shard_losses, objects = parts[index % context.world_size]  # type: ignore[misc]
        position = index // context.world_size
        metrics.add_counts(counts[position: position + 1], names[position: position + 1])
        if scores is not None:
            scores.add(*objects[position])
        if losses is not None:
            losses.append(shard_losses[position])
    matrices = [p[4] for p in parts if p is not None]
    if matrices and all(m is not None for m in matrices):  # the ranks' confusion, summed
        metrics.confusion = torch.stack([torch.tensor(m) for m in matrices]).sum(0)
    model_seconds = sum(p[2] for p in parts if p is not None)
    seconds = max(p[3] for p in parts if p is not None)
    fps = len(pairs) / model_seconds if model_seconds > 0 else math.nan
    if scores is not None:
        return instance_result(metrics, scores, fps, seconds, losses)
    return EvaluationResult(metrics.summary(), metrics.per_image(), fps, seconds,
                            losses=losses)
