"""Task-aware segmentation losses on logits, with an ignore index.

Every loss takes `(logits B x K x H x W, target)` in the convention of `unetzoo.task`, works
in float32 whatever the autocast dtype, and excludes ignored pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .task import IGNORE_INDEX, Task


def _one_hot_and_valid(logits: torch.Tensor, target: torch.Tensor, task: Task,
                       ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probabilities, a {0,1} target and a validity mask, all shaped B x K x H x W."""
    logits = logits.float()
    if task == "multiclass":
        valid = (target != ignore_index).unsqueeze(1)
        onehot = F.one_hot(target.where(valid[:, 0], 0).long(), logits.shape[1])
        return logits.softmax(1), onehot.permute(0, 3, 1, 2).float(), valid.float()
    if task == "binary":
        target = target.unsqueeze(1)
    valid = target != ignore_index
    return logits.sigmoid(), target.where(valid, 0).float(), valid.float()


class _TaskLoss(nn.Module):
    def __init__(self, task: Task, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.task = task
        self.ignore_index = ignore_index


class CrossEntropyLoss(_TaskLoss):
    """Softmax cross-entropy for multiclass; binary cross-entropy (BCE) otherwise."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == "multiclass":
            if (target == self.ignore_index).all():
                return logits.sum() * 0.0
            return F.cross_entropy(logits, target.long(), ignore_index=self.ignore_index)
        if self.task == "binary":
            target = target.unsqueeze(1)
        valid = (target != self.ignore_index).float()
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, target.where(valid.bool(), 0).float(), reduction="none")
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


class FocalLoss(_TaskLoss):
    """Focal loss (Lin et al., ICCV 2017): (1 - p_t)^gamma-weighted cross-entropy.

    `alpha` weights the positive class of sigmoid tasks (0.25 as in the paper); it is not
    used for multiclass.
    """

    def __init__(self, task: Task, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0,
                 alpha: float | None = 0.25) -> None:
        super().__init__(task, ignore_index)
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == "multiclass":
            valid = target != self.ignore_index
            safe = target.where(valid, 0).long()
            log_p = F.log_softmax(logits, 1).gather(1, safe.unsqueeze(1))[:, 0]
            loss = -((1 - log_p.exp()) ** self.gamma) * log_p
            valid = valid.float()
            return (loss * valid).sum() / valid.sum().clamp_min(1.0)
        if self.task == "binary":
            target = target.unsqueeze(1)
        valid = (target != self.ignore_index).float()
        t = target.where(valid.bool(), 0).float()
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p_t = torch.exp(-ce)
        loss = (1 - p_t) ** self.gamma * ce
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return (loss * valid).sum() / valid.sum().clamp_min(1.0)


class TverskyLoss(_TaskLoss):
    """1 - Tversky index (Salehi et al. 2017), computed over the batch per class.

    alpha weights false positives, beta false negatives; alpha = beta = 0.5 is the soft Dice
    loss. Multiclass leaves out the background class 0 (as nnU-Net does); a class with no
    pixels in the batch, predicted or true, scores 1.
    """

    def __init__(self, task: Task, ignore_index: int = IGNORE_INDEX, alpha: float = 0.3,
                 beta: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__(task, ignore_index)
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, valid = _one_hot_and_valid(logits, target, self.task, self.ignore_index)
        probs, onehot = probs * valid, onehot * valid
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = (probs * (1 - onehot)).sum(dims)
        fn = ((1 - probs) * onehot).sum(dims)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        if self.task == "multiclass" and index.numel() > 1:
            index = index[1:]
        return 1.0 - index.mean()


class DiceLoss(TverskyLoss):
    """Soft Dice loss (Milletari et al., V-Net 2016): Tversky with alpha = beta = 0.5, i.e.
    1 - (TP + s) / (TP + (FP + FN) / 2 + s) on probabilities, the smoothed 2TP / (2TP + FP + FN)."""

    def __init__(self, task: Task, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0) -> None:
        super().__init__(task, ignore_index, alpha=0.5, beta=0.5, smooth=smooth)


def lovasz_jaccard_gradient(truth_sorted: torch.Tensor) -> torch.Tensor:
    """The gradient of the Lovasz extension of the Jaccard loss at pixels sorted by
    decreasing error (Berman et al., CVPR 2018, Eq. 8 and Alg. 1), per row.

    Args:
        truth_sorted: `R x N` {0, 1} float ground truth in the order of decreasing error.

    Returns:
        `R x N` weights g with g_i = J(first i errors) - J(first i - 1 errors), where
        J(k errors) = 1 - |truth minus errors| / |truth union errors|: the loss is
        sum_i g_i * error_i (errors sorted).
    """
    total = truth_sorted.sum(1, keepdim=True)
    intersection = total - truth_sorted.cumsum(1)
    union = total + (1 - truth_sorted).cumsum(1)
    jaccard = 1 - intersection / union.clamp_min(1e-6)
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)


class LovaszLoss(_TaskLoss):
    """The Lovasz loss, a convex surrogate of 1 - IoU (Berman, Rannen Triki and Blaschko,
    "The Lovasz-Softmax loss", CVPR 2018), computed per image and averaged over the batch,
    so that it optimises the IoU of each image (the mean over images) rather than of the
    batch.

    Binary and multilabel: the Lovasz hinge, with hinge errors max(0, 1 - logit * sign)
    (sign +1 on foreground, -1 on background) per image and channel. Multiclass: the
    Lovasz-softmax, with errors |onehot - probability| per class, averaged over the classes
    present in the image (background included). Ignored pixels take no part.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == "multiclass":
            probs, onehot, valid = _one_hot_and_valid(logits, target, self.task,
                                                      self.ignore_index)
            errors = (onehot - probs).abs()
            present = (onehot * valid).flatten(2).amax(2).flatten()  # B*K
        else:
            if self.task == "binary":
                target = target.unsqueeze(1)
            valid = (target != self.ignore_index).float()
            onehot = target.where(valid.bool(), 0).float()
            errors = 1 - logits * (2 * onehot - 1)
            present = None
        errors = errors.flatten(2).flatten(0, 1)  # one row per image and channel
        truth = onehot.flatten(2).flatten(0, 1)
        errors = errors.masked_fill(valid.expand_as(onehot).flatten(2).flatten(0, 1) == 0,
                                    -math.inf)
        errors_sorted, order = errors.sort(1, descending=True)
        grad = lovasz_jaccard_gradient(truth.gather(1, order))
        per_row = (F.relu(errors_sorted) * grad).sum(1)
        if present is None:
            return per_row.mean()
        weights = present / present.view(logits.shape[0], -1).sum(1).clamp_min(1).repeat_interleave(
            logits.shape[1])
        return (per_row * weights).sum() / logits.shape[0]


class SumLoss(nn.Module):
    """The sum of several losses, e.g. BCE + Dice."""

    def __init__(self, losses: Sequence[nn.Module]) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for loss in self.losses:
            total = total + loss(logits, target)
        return total


_LOSSES: dict[str, Callable[[Task, int], nn.Module]] = {
    "bce": CrossEntropyLoss,
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszLoss,
}
LOSS_NAMES: tuple[str, ...] = (*_LOSSES, "bce+dice", "ce+dice", "bce+lovasz")


def loss_name(name: str, task: Task) -> str:
    """The loss `name` as it runs for `task`: `ce` and `bce` both name the task's
    cross-entropy (`bce` for binary and multilabel, `ce` for multiclass), e.g.
    `loss_name("ce+dice", "binary") == "bce+dice"`."""
    entropy = "ce" if task == "multiclass" else "bce"
    return "+".join(entropy if p in ("ce", "bce") else p
                    for p in (p.strip().lower() for p in name.split("+")))


def build_loss(name: str, task: Task, ignore_index: int = IGNORE_INDEX) -> nn.Module:
    """A loss by name: bce, ce, dice, focal, tversky, lovasz, or a sum such as bce+dice.

    `bce` is for binary and multilabel tasks, `ce` for multiclass; each is accepted for the
    other task and means the matching cross-entropy.
    """
    parts = [p.strip().lower() for p in name.split("+")]
    unknown = [p for p in parts if p not in _LOSSES]
    if unknown or not parts:
        raise ConfigError(f"unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)} "
                          "or join several with '+'")
    losses = [_LOSSES[p](task, ignore_index) for p in parts]
    return losses[0] if len(losses) == 1 else SumLoss(losses)


class InstanceLoss(nn.Module):
    """The loss of an instance representation (`instances.targets`): each channel's terms of
    the representation's table, summed with weight 1 each, over valid pixels.

    The target is `B x (C + 1) x H x W`: the C encoded target channels, then a validity
    channel (1 where the pixel counts, 0 where the label image was void or padding). Terms:
    `ce` one softmax cross-entropy over a softmax group (target class = the group's channel
    holding 1), `bce` binary cross-entropy with logits, `dice` soft Dice of the sigmoid,
    `mse` / `l1` the squared / absolute error of the channel's activation (sigmoid, or the
    raw output for `none`).
    """

    def __init__(self, representation: Any) -> None:
        super().__init__()
        self.channels = [(c.name, c.activation, tuple(c.losses), c.group)
                         for c in representation.channels]
        groups: dict[str, list[int]] = {}
        for index, (_, _, _, group) in enumerate(self.channels):
            if group is not None:
                groups.setdefault(group, []).append(index)
        self.groups = list(groups.values())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        count = len(self.channels)
        if target.shape[1] != count + 1:
            raise ConfigError(f"an instance target has {count} channels and a validity "
                              f"channel, got {target.shape[1]} channels")
        valid = target[:, count:].float()
        pixels = valid.sum().clamp_min(1.0)
        total = logits.new_zeros((), dtype=torch.float32)
        for group in self.groups:
            classes = target[:, group].argmax(1)
            per_pixel = F.cross_entropy(logits[:, group], classes, reduction="none")
            total = total + (per_pixel * valid[:, 0]).sum() / pixels
        for index, (_, activation, losses, group) in enumerate(self.channels):
            if group is not None:
                continue
            raw, wanted = logits[:, index: index + 1], target[:, index: index + 1].float()
            active = raw.sigmoid() if activation == "sigmoid" else raw
            for term in losses:
                if term == "bce":
                    per_pixel = F.binary_cross_entropy_with_logits(raw, wanted,
                                                                   reduction="none")
                    total = total + (per_pixel * valid).sum() / pixels
                elif term == "dice":
                    inter = (active * wanted * valid).sum()
                    union = ((active + wanted) * valid).sum()
                    total = total + 1 - (2 * inter + 1) / (union + 1)
                elif term in ("mse", "l1"):
                    error = (active - wanted).square() if term == "mse" else \
                        (active - wanted).abs()
                    total = total + (error * valid).sum() / pixels
                else:
                    raise ConfigError(f"unknown loss term {term!r} of an instance channel")
        return total


def deep_supervision_loss(loss: nn.Module, outputs: torch.Tensor | Sequence[torch.Tensor],
                          target: torch.Tensor, weights: Sequence[float] | None = None
                          ) -> torch.Tensor:
    """sum_k w_k * loss(output_k, target); a single tensor is just `loss(output, target)`."""
    if isinstance(outputs, torch.Tensor):
        return loss(outputs, target)
    if weights is None:
        weights = [1.0 / len(outputs)] * len(outputs)
    if len(weights) != len(outputs):
        raise ConfigError(f"{len(outputs)} model outputs but {len(weights)} loss weights")
    return sum(w * loss(o, target) for w, o in zip(weights, outputs, strict=True))
