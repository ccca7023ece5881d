"""One optimizer step, as the trainer and `unetzoo bench --train` take it.

The step is split in two so that the trainer can agree with the other processes on whether
the loss is finite before anything changes: `loss()` runs the forward pass under autocast
and the (deep-supervision) loss; `update()` runs the scaled backward pass, optional gradient
clipping, the optimizer step and the gradient scaler's update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...losses import deep_supervision_loss
from ...runtime import Runtime

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class OptimizerStep:
    """Forward, loss, backward and optimizer update of one batch.

    Args:
        forward: the module to call (the model, its DDP wrapper, or a compiled form).
        model: the model whose parameters are clipped (the unwrapped module).
        loss_fn: `loss_fn(logits, target) -> scalar`, applied to every output of a
            deep-supervised model with `weights`.
        optimizer: the optimizer stepping `model`'s parameters.
        runtime: device, precision (autocast) and memory format of inputs.
        weights: loss weight per output of a deep-supervised model (None: main output only).
        grad_clip: clip the global gradient norm to this value (None: no clipping).
    """

    def __init__(self, forward: nn.Module | Callable[[torch.Tensor], object], model: nn.Module,
                 loss_fn: LossFn, optimizer: torch.optim.Optimizer, runtime: Runtime,
                 weights: Sequence[float] | None = None, grad_clip: float | None = None
                 ) -> None:
        self.forward = forward
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.runtime = runtime
        self.weights = weights
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler(runtime.device.type,
                                           enabled=runtime.precision == "fp16")

    def loss(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (`B x C x H x W` images, their targets), with the graph
        kept for `update`."""
        images = self.runtime.prepare_input(images)
        target = target.to(self.runtime.device, non_blocking=True)
        with self.runtime.autocast():
            outputs = self.forward(images)
        return deep_supervision_loss(self.loss_fn, outputs, target, self.weights)

    def update(self, loss: torch.Tensor) -> None:
        """Backward pass of `loss` and one optimizer step (scaled in fp16, clipped when
        `grad_clip` is set)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
