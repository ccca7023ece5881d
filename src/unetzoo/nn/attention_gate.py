"""Additive attention gates on U-Net skips (Oktay et al. 2018, arXiv:1804.03999).

A gate scales the skip feature `x` by attention coefficients `alpha` in [0, 1], one per pixel:
`x_hat = alpha * x`, with `alpha = sigmoid(psi(relu(W_x x + W_g g)))` (additive attention).
Both kinds follow the `UNet` gate protocol: built from (skip, up, coarse) channels and called
as `gate(skip, g_up, g_coarse)`, where `g_up` is the decoder feature already up-sampled to the
skip's level and `g_coarse` the decoder feature one level below, before up-sampling.

- `SameLevelGate`: the widespread PyTorch form. `g = g_up`; W_x, W_g are 1x1 convs with a norm,
  and a norm follows psi as well; alpha is computed at the skip's resolution.
- `CoarseGate`: the paper's form. `g = g_coarse`, the gating signal from the coarser scale;
  W_x is a 2x2 stride-2 conv bringing the skip to the coarse grid, W_g a 1x1 conv, no norms
  (the paper's equation: psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi); alpha is computed on the
  coarse grid and resampled bilinearly to the skip's size.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvNormAct
from .norms import NormKind


class AttentionGate(nn.Module):
    """Base of the gates: `forward` returns `alpha * x`; subclasses compute `alpha`.

    While `record` is true, each forward keeps its coefficients (B x 1 x h x w, at the skip's
    resolution) in `last_map`; models use this to return attention maps without a second
    forward path.
    """

    def __init__(self) -> None:
        super().__init__()
        self.record = False
        self.last_map: torch.Tensor | None = None

    def coefficients(self, x: torch.Tensor, g_up: torch.Tensor,
                     g_coarse: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, g_up: torch.Tensor, g_coarse: torch.Tensor) -> torch.Tensor:
        alpha = self.coefficients(x, g_up, g_coarse)
        if self.record:
            self.last_map = alpha
        return x * alpha


class SameLevelGate(AttentionGate):
    """alpha = sigmoid(N(psi(relu(N(W_g g_up) + N(W_x x))))), 1x1 convs, N = `norm`.

    With batch norm and `bias=True` this is the widespread PyTorch gate:
    `SameLevelGate(512, 512, 256, bias=True)` has 263,939 parameters.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int,
                 norm: NormKind = "batch", bias: bool | None = None) -> None:
        super().__init__()
        unit = partial(ConvNormAct, kernel_size=1, norm=norm, bias=bias, act=False)
        self.w_x = unit(skip_channels, inter_channels)
        self.w_g = unit(gate_channels, inter_channels)
        self.psi = nn.Sequential(unit(inter_channels, 1), nn.Sigmoid())

    def coefficients(self, x: torch.Tensor, g_up: torch.Tensor,
                     g_coarse: torch.Tensor) -> torch.Tensor:
        return self.psi(F.relu(self.w_x(x) + self.w_g(g_up)))


class CoarseGate(AttentionGate):
    """Oktay's grid gate: alpha = up(sigmoid(psi(relu(W_x x + W_g g_coarse)))).

    W_x: 2x2 stride-2 conv (no bias), W_g: 1x1 conv (its bias is b_g), psi: 1x1 conv to one
    channel. Works for any sizes: W_g's output is resampled to W_x's grid if they differ, and
    alpha is resampled bilinearly to the skip's size.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_x = nn.Conv2d(skip_channels, inter_channels, kernel_size=2, stride=2, bias=False)
        self.w_g = nn.Conv2d(gate_channels, inter_channels, kernel_size=1)
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, kernel_size=1), nn.Sigmoid())

    def coefficients(self, x: torch.Tensor, g_up: torch.Tensor,
                     g_coarse: torch.Tensor) -> torch.Tensor:
        theta = self.w_x(x)
        phi = self.w_g(g_coarse)
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = self.psi(F.relu(theta + phi))
        return F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)

