"""Recurrent residual convolution blocks of R2U-Net (Alom et al. 2018, arXiv:1802.06955)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import ModelError
from .blocks import ConvNormAct

if TYPE_CHECKING:
    from .norms import NormKind


class RecurrentConv(nn.Module):
    """A recurrent convolutional layer unfolded for `t` steps with ONE shared unit f.

    f = 3x3 conv -> norm -> ReLU; x1 = f(x), then `t` times x1 = f(x + x1). The feed-forward
    and recurrent weights are the same conv (the widespread PyTorch form), so the parameter
    count does not depend on `t`.
    """

    def __init__(self, channels: int, t: int = 2, norm: NormKind = "batch",
                 bias: bool | None = None) -> None:
        super().__init__()
        if t < 1:
            raise ModelError(f"recurrence steps t must be >= 1, got {t}")
        self.t = t
        self.f = ConvNormAct(channels, channels, norm=norm, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.f(x)
        for _ in range(self.t):
            x1 = self.f(x + x1)
        return x1


class RRCNNBlock(nn.Module):
    """Recurrent residual block: x = 1x1 conv(in -> out); out = x + RCNN(x).

    RCNN is two stacked `RecurrentConv` layers. The 1x1 conv has no norm after it, so it keeps
    its bias unless `bias=False`. `RRCNNBlock(3, 64, bias=True)` has 74,368 parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, t: int = 2,
                 norm: NormKind = "batch", bias: bool | None = None) -> None:
        super().__init__()
        self.project = ConvNormAct(in_channels, out_channels, kernel_size=1, norm="none",
                                   bias=bias, act=False)
        self.rcnn = nn.Sequential(RecurrentConv(out_channels, t, norm, bias),
                                  RecurrentConv(out_channels, t, norm, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.rcnn(x)
