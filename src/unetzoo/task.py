"""The task (binary | multiclass | multilabel | instance) that drives heads, losses, metrics
and outputs.

Targets use one convention everywhere:
- binary: long `B x H x W` with values {0, 1}; multiclass: long `B x H x W` with class
  indices 0..K-1; both use `IGNORE_INDEX` (255) for pixels that count nowhere.
- multilabel: uint8/long `B x K x H x W` with {0, 1} per label, `IGNORE_INDEX` to ignore.
- instance: the data layer gives int32 label images `B x H x W`: 0 background, one id > 0
  per object (ids as stored, not necessarily consecutive), `IGNORE_LABEL` (-1) for pixels
  that count nowhere; the model learns targets encoded from them by its representation
  (instances/), which also sets its number of output channels.
"""

from __future__ import annotations

from typing import Literal

import torch

from .errors import ConfigError

Task = Literal["binary", "multiclass", "multilabel", "instance"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel", "instance")
IGNORE_INDEX = 255
IGNORE_LABEL = -1  # instance label images: pixels that count nowhere (255 may be an id)


def check_task(task: str, num_classes: int) -> Task:
    """Validate a task name against the number of output channels: 1 for binary, >= 2 for
    multiclass, >= 1 for multilabel and instance (an instance model's channels are set by
    its target representation, so any count of at least one is accepted here).

    Raises:
        ConfigError: an unknown task, or a channel count the task cannot have.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "binary" and num_classes != 1:
        raise ConfigError(f"a binary task has 1 output channel, got num_classes={num_classes}")
    if task == "multiclass" and num_classes < 2:
        raise ConfigError(f"a multiclass task needs num_classes >= 2, got {num_classes}")
    if task == "multilabel" and num_classes < 1:
        raise ConfigError(f"a multilabel task needs num_classes >= 1, got {num_classes}")
    if task == "instance" and num_classes < 1:
        raise ConfigError(f"an instance task needs num_classes >= 1 (its output channels, set "
                          f"by the target representation), got {num_classes}")
    return task  # type: ignore[return-value]


def probabilities(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Per-pixel probabilities: softmax over classes for multiclass, sigmoid otherwise."""
    logits = logits.float()
    return logits.softmax(dim=1) if task == "multiclass" else logits.sigmoid()


def labels_from_probabilities(probs: torch.Tensor, task: Task, threshold: float = 0.5
                              ) -> torch.Tensor:
    """Hard labels in the target convention (without ignore): B x H x W, or B x K x H x W."""
    if task == "multiclass":
        return probs.argmax(dim=1)
    hard = (probs > threshold).long()
    return hard[:, 0] if task == "binary" else hard



def labels_from_logits(logits: torch.Tensor, task: Task, threshold: float = 0.5) -> torch.Tensor:
    """Hard labels straight from logits (`B x K x H x W`), in the target convention."""
    return labels_from_probabilities(probabilities(logits, task), task, threshold)
