"""The task (binary | multiclass | multilabel) that drives heads, losses, metrics and outputs.

Targets use one convention everywhere:
- binary: long `B x H x W` with values {0, 1}; multiclass: long `B x H x W` with class
  indices 0..K-1; both use `IGNORE_INDEX` (255) for pixels that count nowhere.
- multilabel: uint8/long `B x K x H x W` with {0, 1} per label, `IGNORE_INDEX` to ignore.
"""

from __future__ import annotations

from typing import Literal

import torch

from .errors import ConfigError

Task = Literal["binary", "multiclass", "multilabel"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")
IGNORE_INDEX = 255


def check_task(task: str, num_classes: int) -> Task:
    """Validate a task name against the number of output channels."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "binary" and num_classes != 1:
        raise ConfigError(f"a binary task has 1 output channel, got num_classes={num_classes}")
    if task == "multiclass" and num_classes < 2:
        raise ConfigError(f"a multiclass task needs num_classes >= 2, got {num_classes}")
    if task == "multilabel" and num_classes < 1:
        raise ConfigError(f"a multilabel task needs num_classes >= 1, got {num_classes}")
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
