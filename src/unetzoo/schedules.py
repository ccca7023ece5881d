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


PACE_GROWTH = 1.05  # the most the decay's pace may grow from one step to the next


class BudgetSchedule:
    """A schedule laid over a time budget, whose length in steps is known only as step
    times are measured (see `engine.training.budget`). The learning rate follows one curve:

    - until the first estimate of the run's length (`set_total`, once the step time is
      measured), a linear warm-up of `warmup_steps`;
    - at that estimate the schedule is laid: the warm-up ends at `warmup`, at most a tenth
      of the estimated length (and not before the step it is laid at), rising linearly
      from where it stands; this end stays fixed;
    - after the warm-up, a progress p (0 to 1) drives the decay (cosine, poly):
      each step moves p by (1 - p) / (the steps left in the latest estimate, at least 2),
      and the pace grows by at most `PACE_GROWTH` per step. A later estimate only stretches
      or shrinks what is left of the curve: p never goes back (a decaying lr never rises
      after the warm-up), comes within a few percent of 1 at the estimated last step and
      only halves its distance to 1 per step after it (a run that outlasts a pessimistic
      estimate never trains at the schedule's floor), and a swing of the estimate (a slow
      first epoch that fills the sample cache, a first validation dearer than estimated)
      bends the curve instead of making it jump. (Laid anew from each estimate, as before,
      the lr of a run whose first epoch took half of the budget went 1e-5, 3.2e-4, 9e-6 at
      its first epoch ends.)
    - `step`: `gamma` every `step_size` epochs; `constant`: 1 (both after the warm-up).

    Called with the optimizer step like `lr_factor`'s functions, in increasing order
    (torch's LambdaLR); its state is plain values, saved with the scheduler's state.

    Raises:
        ConfigError: `schedule` is not one of `SCHEDULES`.
    """

    def __init__(self, schedule: str, warmup_steps: int, steps_per_epoch: int,
                 step_size: int = 30, gamma: float = 0.5, power: float = 0.9) -> None:
        check_schedule(schedule)
        self.schedule, self.warmup_steps = schedule, warmup_steps
        self.steps_per_epoch, self.step_size = steps_per_epoch, step_size
        self.gamma, self.power = gamma, power
        self.total: int | None = None  # the latest estimate of the run's length in steps
        self.laid: int | None = None  # the step the schedule was laid at
        self.warmup: int | None = None  # the last step of the warm-up, once laid
        self.start = 0.0  # the factor the laid warm-up rises from
        self.progress = 0.0  # p of the decay at step `at`
        self.pace: float | None = None  # the last step's move of p
        self.at = -1  # the last step computed
        self.value = 0.0  # the factor at step `at`

    def set_total(self, total: int) -> None:
        """The run's estimated length in optimizer steps (the first call lays the
        schedule)."""
        self.total = max(1, int(total))

    def stretch(self, ratio: float) -> None:
        """Lay the rest of the decay over a run `ratio` times as long as planned (a larger
        budget given on resume): the progress so far becomes `1 / ratio` of what it was,
        as in a run planned that long from the start (the lr rises from the old floor to
        the new curve at the resume, and follows it from there)."""
        if ratio > 1:
            self.progress /= ratio
            self.pace = None
            if self.at >= 0 and self.warmup is not None and self.at > self.warmup:
                self.value = self._decay(self.at)

    def __call__(self, step: int) -> float:
        while self.at < step:
            self._advance(self.at + 1)
        return self.value

    def _advance(self, step: int) -> None:
        if self.laid is None and self.total is not None:
            self.laid, self.start = step, self.value if step > 0 else 0.0
            self.warmup = max(step, min(self.warmup_steps, self.total // 10))
        if self.laid is None or self.warmup is None:  # before the first estimate
            self.value = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps \
                else 1.0
        elif step <= self.warmup:  # rising from `start` at laid - 1 to 1 at the warm-up end
            self.value = self.start + (1 - self.start) * (step - self.laid + 1) / (
                self.warmup - self.laid + 1)
        else:
            left = max(2, (self.total or 1) - step)  # the floor is for after the end
            pace = (1 - self.progress) / left
            if self.pace is not None:
                pace = min(pace, self.pace * PACE_GROWTH)
            self.progress, self.pace = min(1.0, self.progress + pace), pace
            self.value = self._decay(step)
        self.at = step

    def _decay(self, step: int) -> float:
        options = {"gamma": self.gamma, "steps_per_epoch": self.steps_per_epoch,
                   "step_size": self.step_size, "power": self.power}
        return _SCHEDULES[self.schedule](self.progress, step, options)
