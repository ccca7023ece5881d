"""Evaluate a predictor on a dataset: per-image and summarised metrics, speed, overlays."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import SegmentationDataset
from ..data.prepare import evaluation_encoder, labelled_split
from ..fileio import atomic_write_text
from ..metrics import METRIC_NAMES, MetricAccumulator
from ..viz import class_colors, comparison_panel, save_png
from .infer import InferenceOptions, Predictor


@dataclass
class EvaluationResult:
    """Summary (mean over images and dataset-global), per-image rows and throughput."""

    summary: dict[str, Any]
    per_image: list[dict[str, Any]]
    fps: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    counts: torch.Tensor | None = field(default=None, repr=False)  # image, class: TP FP FN TN

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "fps": self.fps, "seconds": self.seconds, **self.extra}

    def write(self, folder: Path) -> None:
        """metrics.json and per_image.csv into `folder`, atomically."""
        atomic_write_text(folder / "metrics.json", json.dumps(self.to_json(), indent=2) + "\n")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["image", *METRIC_NAMES], lineterminator="\n")
        writer.writeheader()
        for row in self.per_image:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
        atomic_write_text(folder / "per_image.csv", out.getvalue())


def _unbatched(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


def evaluate(predictor: Predictor, dataset: SegmentationDataset, class_names: Sequence[str],
             debug_dir: Path | None = None, workers: int = 0, progress: bool = True,
             class_colors_given: Sequence[Sequence[int]] | None = None) -> EvaluationResult:
    """Predict every image at its full size and score it against its mask.

    FPS counts images per second of model time (tiling included), excluding file reading.
    With `debug_dir`, writes an image | ground truth | prediction panel per image there.
    """
    num_classes = predictor.model_num_classes
    metrics = MetricAccumulator(predictor.task, num_classes, class_names)
    colors = class_colors(max(num_classes, 2) + 1, class_colors_given)
    predictor.model_seconds = 0.0
    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=_unbatched)
    for sample in tqdm(loader, desc="evaluate", unit="img", disable=not progress, leave=False):
        pred = predictor.labels(sample["image"])
        target = sample["mask"]
        metrics.update(pred[None], target[None], [sample["name"]])
        if debug_dir is not None:
            pre = predictor.preprocessing
            image = sample["image"].numpy().transpose(1, 2, 0) * np.asarray(pre.std) + np.asarray(
                pre.mean)
            panel = comparison_panel(image, target.numpy(), pred.numpy(), colors,
                                     binary=predictor.task == "binary")
            save_png(debug_dir / f"{sample['name']}.png", panel)
    seconds = time.perf_counter() - start
    images = len(metrics.names)
    fps = images / predictor.model_seconds if predictor.model_seconds > 0 else float("nan")
    return EvaluationResult(metrics.summary(), metrics.per_image(), fps, seconds,
                            counts=metrics.stacked())


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
            lines.append(f"{name:<16} {scores['dice']:>8.4f} {scores['iou']:>8.4f}")
    lines.append(f"{result.summary['images']} images, {result.fps:.1f} images/s model "
                 f"throughput (FPS), {result.seconds:.1f} s in all")
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint_path: Path | str, dataset: Path | str,
                        csvfile: Path | str | None = None, split: str | None = "test",
                        out_dir: Path | str | None = None, debug: bool = False,
                        options: InferenceOptions | None = None, workers: int = 0,
                        progress: bool = True) -> EvaluationResult:
    """Evaluate a checkpoint (or an exported file) on a dataset's split (all pairs when the
    layout has no split), writing metrics.json, per_image.csv and, with `debug`, overlays
    into `out_dir`. The model runs in the options' backend (default `auto`: OpenVINO where
    installed, see `Predictor.open`)."""
    predictor = Predictor.open(checkpoint_path, options)
    checkpoint = predictor.checkpoint
    assert checkpoint is not None
    encoder = evaluation_encoder(checkpoint.task, checkpoint.model_spec["num_classes"], dataset,
                                 checkpoint.config)
    pairs, used_split = labelled_split(dataset, csvfile, split, encoder)
    data = SegmentationDataset(pairs, checkpoint.preprocessing, encoder)
    out = Path(out_dir) if out_dir else None
    result = evaluate(predictor, data, checkpoint.class_names,
                      debug_dir=out / "overlays" if out and debug else None, workers=workers,
                      progress=progress, class_colors_given=checkpoint.class_colors)
    result.extra = {"checkpoint": str(checkpoint_path), "dataset": str(dataset),
                    "split": used_split, "runtime": predictor.runtime.describe()}
    if out:
        result.write(out)
    return result
