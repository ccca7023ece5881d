"""Optimizers and per-step learning-rate schedules (cosine, step, poly, constant) with
linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                    momentum: float) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov); no weight decay on norms and biases."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise ConfigError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


def factor_at(schedule: str, step: int, total_steps: int, warmup_steps: int,
              steps_per_epoch: int, step_size: int = 30, gamma: float = 0.5,
              power: float = 0.9) -> float:
    """The multiplier of the peak learning rate at optimizer step `step` (0-based) of a run
    of `total_steps`: linear warm-up over `warmup_steps`, then the schedule's decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1 - progress) ** power
    if schedule == "step":
        return gamma ** (step // (steps_per_epoch * step_size))
    return 1.0


def check_schedule(schedule: str) -> None:
    """Raise ConfigError for an unknown schedule name."""
    if schedule not in ("cosine", "step", "poly", "constant"):
        raise ConfigError(f"unknown schedule {schedule!r}; choose cosine, step, poly or constant")


def lr_factor(schedule: str, total_steps: int, warmup_steps: int, steps_per_epoch: int,
              step_size: int = 30, gamma: float = 0.5, power: float = 0.9
              ) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at optimizer step `s` (0-based)."""
    check_schedule(schedule)
    return lambda step: factor_at(schedule, step, total_steps, warmup_steps, steps_per_epoch,
                                  step_size, gamma, power)


class BudgetSchedule:
    """A schedule laid over a time budget: the run's length in steps (`total`) is
    re-estimated as step times are measured (see `engine.budget`). The warm-up is
    `warmup_steps`, at most a tenth of the first estimate of the length, and stays fixed
    from then on. Called with the step like `lr_factor`'s functions."""

    def __init__(self, schedule: str, warmup_steps: int, steps_per_epoch: int,
                 step_size: int = 30, gamma: float = 0.5, power: float = 0.9) -> None:
        check_schedule(schedule)
        self.schedule, self.warmup_steps = schedule, warmup_steps
        self.steps_per_epoch, self.step_size = steps_per_epoch, step_size
        self.gamma, self.power = gamma, power
        self.total = 1
        self.warmup: int | None = None

    def set_total(self, total: int) -> None:
        """The run's estimated length in optimizer steps."""
        self.total = max(1, total)
        if self.warmup is None:
            self.warmup = min(self.warmup_steps, self.total // 10)

    def __call__(self, step: int) -> float:
        if self.warmup is None:  # before the first estimate: the warm-up's start
            return min(1.0, (step + 1) / max(1, self.warmup_steps))
        return factor_at(self.schedule, step, self.total, self.warmup,
                         self.steps_per_epoch, self.step_size, self.gamma, self.power)
