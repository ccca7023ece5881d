"""Optimizers and per-step learning-rate schedules (cosine, step, poly, constant) with
linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                    momentum: float, fused: bool | None = None) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov); no weight decay on norms and biases.

    `fused` (default: wherever PyTorch has the kernel, i.e. float parameters on CPU or
    CUDA) updates every parameter in one fused kernel per group instead of a chain of
    element-wise ops over the parameter list; `False` gives the unfused (foreach) form.
    """
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
    options = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, **options)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **options)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0,
                               **options)
    raise ConfigError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


def lr_factor(schedule: str, total_steps: int, warmup_steps: int, steps_per_epoch: int,
              step_size: int = 30, gamma: float = 0.5, power: float = 0.9
              ) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at optimizer step `s` (0-based)."""
    if schedule not in ("cosine", "step", "poly", "constant"):
        raise ConfigError(f"unknown schedule {schedule!r}; choose cosine, step, poly or constant")

    def factor(step: int) -> float:
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

    return factor
