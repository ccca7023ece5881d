"""Segmentation metrics from confusion counts, per image and dataset-global.

Counts are TP, FP, FN, TN per image and per class (one-vs-rest), ignored pixels excluded.
A ratio whose denominator is zero scores 1.0 when the image has nothing to find and nothing
was predicted (TP + FP + FN = 0), else 0.0.

Headline scores: binary reports the foreground class; multiclass the mean over foreground
classes 1..K-1; multilabel the mean over labels. `mdice` / `miou` are the mean over all
classes including background (the mmsegmentation convention: for a binary task the mean of
background and foreground). A mean over classes takes only the classes in play (in the
target or the prediction: TP + FP + FN > 0), as nnU-Net and MONAI's `ignore_empty` do, so a
class that is absent from an image (or, dataset-global, from the whole split) and was not
predicted neither lifts nor lowers the score; with no class in play the mean is 1.0. The
per-class scores keep the 1.0 of the rule above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .errors import MetricError
from .task import IGNORE_INDEX, Task

METRIC_NAMES: tuple[str, ...] = (
    "dice", "iou", "precision", "recall", "specificity", "f1", "accuracy", "mdice", "miou",
)


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, task: Task, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """TP, FP, FN, TN as a `B x C x 4` int64 tensor.

    `pred` and `target` follow the target convention of `unetzoo.task`. C is 2 for binary
    (background, foreground), K for multiclass and multilabel.
    """
    if task == "multilabel":
        valid = target != ignore_index
        p, t = pred.bool(), target == 1
    else:
        classes = torch.arange(2 if task == "binary" else num_classes, device=pred.device)
        valid = (target != ignore_index).unsqueeze(1)
        p = pred.unsqueeze(1) == classes.view(1, -1, 1, 1)
        t = target.unsqueeze(1) == classes.view(1, -1, 1, 1)
    p, t = p & valid, t & valid
    dims = (2, 3)
    tp = (p & t).sum(dims)
    fp = (p & ~t).sum(dims)
    fn = (~p & t).sum(dims)
    tn = (valid & ~p & ~t).sum(dims)
    return torch.stack([tp, fp, fn, tn], dim=-1).long()


def class_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                    ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel confusion matrix `K x K` int64 of label maps (binary: K = 2): row = true class,
    column = predicted class, ignored pixels excluded. `pred` and `target` are `... x H x W`
    class indices (the binary and multiclass target convention)."""
    valid = target != ignore_index
    index = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def _ratio(num: torch.Tensor, den: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), empty.to(num.dtype))


def scores_from_counts(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class dice, iou, precision, recall, specificity, f1, accuracy from `... x 4` counts."""
    tp, fp, fn, tn = counts.double().unbind(-1)
    nothing = ((tp + fp + fn) == 0).double()
    dice = _ratio(2 * tp, 2 * tp + fp + fn, nothing)
    return {
        "dice": dice,
        "iou": _ratio(tp, tp + fp + fn, nothing),
        "precision": _ratio(tp, tp + fp, nothing),
        "recall": _ratio(tp, tp + fn, nothing),
        "specificity": _ratio(tn, tn + fp, (fp == 0).double()),
        "f1": dice,
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, torch.ones_like(tp)),
    }


def in_play(counts: torch.Tensor) -> torch.Tensor:
    """`... x C` bool from `... x C x 4` counts: the class is in a mask or predicted
    (TP + FP + FN > 0). A class not in play scores 1.0 and is left out of means."""
    return counts[..., :3].sum(-1) > 0


def mean_over_classes(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The mean of `... x C` per-class scores over the classes in play (see `in_play`);
    1.0 where no class is in play."""
    playing = in_play(counts)
    number = playing.sum(-1)
    total = (scores * playing).sum(-1)
    return torch.where(number > 0, total / number.clamp_min(1), torch.ones_like(total))


def headline(counts: torch.Tensor, task: Task) -> dict[str, torch.Tensor]:
    """The headline metrics (see the module docstring) from `... x C x 4` counts."""
    per_class = scores_from_counts(counts)
    if task == "multilabel":
        out = {k: mean_over_classes(v, counts) for k, v in per_class.items()}
    else:
        fg = slice(1, None)
        out = {k: mean_over_classes(v[..., fg], counts[..., fg, :])
               for k, v in per_class.items()}
        tp = counts[..., 0].double().sum(-1)
        total = (counts[..., 0] + counts[..., 2]).double().sum(-1)  # every valid pixel once
        out["accuracy"] = torch.where(total > 0, tp / total.clamp_min(1), torch.ones_like(tp))
    out["mdice"] = mean_over_classes(per_class["dice"], counts)
    out["miou"] = mean_over_classes(per_class["iou"], counts)
    return out


@dataclass
class MetricAccumulator:
    """Collects per-image counts; summarises as the mean over images and dataset-global."""

    task: Task
    num_classes: int
    class_names: Sequence[str]
    ignore_index: int = IGNORE_INDEX
    names: list[str] = field(default_factory=list)
    counts: list[torch.Tensor] = field(default_factory=list)
    # K x K pixel confusion (binary, multiclass) while every image added one; else None
    confusion: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.task != "multilabel":
            classes = 2 if self.task == "binary" else self.num_classes
            self.confusion = torch.zeros(classes, classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor, names: Sequence[str]) -> None:
        """Add a batch of hard predictions and targets (target convention) for `names`."""
        batch = confusion_counts(pred, target, self.task, self.num_classes, self.ignore_index)
        self.counts.extend(batch.cpu())
        self.names.extend(names)
        if self.confusion is not None:
            self.confusion += class_confusion(pred.cpu(), target.cpu(), len(self.confusion),
                                              self.ignore_index)

    def add_counts(self, counts: torch.Tensor, names: Sequence[str],
                   confusion: torch.Tensor | None = None) -> None:
        """Add already computed `B x C x 4` counts (e.g. gathered from other processes) and,
        when known, their `K x K` class confusion (without it, the summary has none)."""
        self.counts.extend(counts.cpu())
        self.names.extend(names)
        if self.confusion is not None:
            self.confusion = None if confusion is None else self.confusion + confusion.cpu()

    def stacked(self) -> torch.Tensor:
        if not self.counts:
            raise MetricError("no images were evaluated")
        return torch.stack(self.counts)

    def per_image(self) -> list[dict[str, float | str]]:
        """One row per image: its name and its headline metrics."""
        scores = headline(self.stacked(), self.task)
        return [{"image": name, **{k: float(scores[k][i]) for k in METRIC_NAMES}}
                for i, name in enumerate(self.names)]

    def summary(self) -> dict[str, object]:
        """`mean_over_images` and `global` headline metrics, global per-class scores and,
        for binary and multiclass tasks, the `confusion_matrix` of pixels (rows: true class,
        columns: predicted class, in class order)."""
        counts = self.stacked()
        per_image = headline(counts, self.task)
        total = counts.sum(0)
        glob = headline(total, self.task)
        per_class = scores_from_counts(total)
        playing = in_play(total)
        classes = self.class_names
        if self.task == "binary":
            classes = ["background", *classes[-1:]]
        out: dict[str, object] = {
            "images": len(self.names),
            "mean_over_images": {k: float(per_image[k].mean()) for k in METRIC_NAMES},
            "global": {k: float(glob[k]) for k in METRIC_NAMES},
            "per_class": {name: {**{k: float(v[c]) for k, v in per_class.items() if k != "f1"},
                                 "absent": not bool(playing[c])}
                          for c, name in enumerate(classes)},
        }
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion.tolist()
        return out
