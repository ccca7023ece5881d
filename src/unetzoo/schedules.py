"""Optimizers and per-step learning-rate schedules (cosine, step, poly, constant) with
linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .errors import ConfigError

# name -> (groups, lr, momentum, **options such as fused=True) -> optimizer
_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda groups, lr, momentum, **o: torch.optim.Adam(groups, lr=lr, **o),
    "adamw": lambda groups, lr, momentum, **o: torch.optim.AdamW(groups, lr=lr, **o),
    "sgd": lambda groups, lr, momentum, **o: torch.optim.SGD(groups, lr=lr, momentum=momentum,
                                                             nesterov=momentum > 0, **o),
}
OPTIMIZERS: tuple[str, ...] = tuple(_OPTIMIZERS)

# factor after warm-up, from (progress in [0, 1] after warm-up, step, options)
_SCHEDULES: dict[str, Callable[[float, int, dict[str, float]], float]] = {
    "cosine": lambda progress, step, o: 0.5 * (1 + math.cos(math.pi * progress)),
    "step": lambda progress, step, o: o["gamma"] ** (step // (o["steps_per_epoch"]
                                                              * o["step_size"])),
    "poly": lambda progress, step, o: (1 - progress) ** o["power"],
    "constant": lambda progress, step, o: 1.0,
}
SCHEDULES: tuple[str, ...] = tuple(_SCHEDULES)


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                    momentum: float, fused: bool | None = None) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov when `momentum` > 0); no weight decay on norms and biases.

    `fused` (default: wherever PyTorch has the kernel, i.e. float parameters on CPU or
    CUDA) updates every parameter in one fused kernel per group instead of a chain of
    element-wise ops over the parameter list; `False` gives the unfused (foreach) form.

    Raises:
        ConfigError: `name` is not one of `OPTIMIZERS`.
    """
    if name not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if fused is None:
        params = decay + no_decay
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                     for p in params)
    return _OPTIMIZERS[name](groups, lr, momentum, **({"fused": True} if fused else {}))


def check_schedule(schedule: str) -> None:
    """Raise ConfigError for a schedule that is not one of `SCHEDULES`."""
    if schedule not in _SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def factor_at(schedule: str, step: int, total_steps: int, warmup_steps: int,
              steps_per_epoch: int, step_size: int = 30, gamma: float = 0.5,
              power: float = 0.9) -> float:
    """The multiplier of the peak learning rate at optimizer step `step` (0-based) of a run
    of `total_steps`.

    Warm-up: (s + 1) / warmup_steps for the first `warmup_steps` steps. Then, with
    p = (s - warmup_steps) / (total_steps - warmup_steps): cosine 0.5 (1 + cos(pi p)),
    poly (1 - p)^power, step gamma^(s // (steps_per_epoch * step_size)), constant 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    options = {"gamma": gamma, "steps_per_epoch": steps_per_epoch, "step_size": step_size,
               "power": power}
    return _SCHEDULES[schedule](progress, step, options)


def lr_factor(schedule: str, total_steps: int, warmup_steps: int, steps_per_epoch: int,
              step_size: int = 30, gamma: float = 0.5, power: float = 0.9
              ) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at optimizer step `s` (0-based), as
    `factor_at` gives it for a run of `total_steps`.

    Raises:
        ConfigError: `schedule` is not one of `SCHEDULES`.
    """
    check_schedule(schedule)
    return lambda step: factor_at(schedule, step, total_steps, warmup_steps, steps_per_epoch,
                                  step_size, gamma, power)


class BudgetSchedule:
    """A schedule laid over a time budget: the run's length in steps (`total`) is
    re-estimated as step times are measured (see `engine.budget`). The warm-up is
    `warmup_steps`, at most a tenth of the first estimate of the length, and stays fixed
    from then on. Called with the step like `lr_factor`'s functions.

    Raises:
        ConfigError: `schedule` is not one of `SCHEDULES`.
    """

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
