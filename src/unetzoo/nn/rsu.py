"""Residual U-blocks (RSU) of U2-Net (Qin et al., 2020) and the RSDPU variant of DPSAU2-Net.

An RSU-L is a small U-Net inside a residual block:

    x' = stem(x)                                   REBNCONV(in -> out)
    [x' = pw(dw(x') + x')]                         RSDPU only: residual depthwise-separable unit
    e1 = conv(x'), e2 = conv(pool e1), ..., e_{L-1} = conv(pool e_{L-2})   (mid channels)
    e_L = dilated conv(e_{L-1})                    dilation 2, no pooling at the bottom
    d_{L-1} = conv(cat[e_L, e_{L-1}]), d_i = conv(cat[up(d_{i+1}), e_i])  (2 mid -> mid)
    out = d_1 + x'                                 d_1 has `out` channels

RSU-4F ("dilated") replaces pooling and up-sampling by dilations 1, 2, 4, 8 down and 4, 2, 1 up,
for the deepest, lowest-resolution stages. REBNCONV = 3x3 conv (with bias) -> BN -> ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .blocks import ConvNormAct


def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize `x` to the spatial size of `like`.

    Same-size resizing is an exact copy; it is not skipped, so that a traced or exported graph
    stays valid for input sizes whose pooled sizes match differently (ceil-mode 1 -> 1).
    """
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def rebnconv(in_channels: int, out_channels: int, dilation: int = 1) -> ConvNormAct:
    """U2-Net's REBNCONV: 3x3 conv with bias and the given dilation -> BN -> ReLU."""
    return ConvNormAct(in_channels, out_channels, 3, norm="batch", bias=True, dilation=dilation)


class ResidualDepthwiseSeparable(nn.Module):
    """DPSAU2-Net's residual depthwise-separable unit: `pw(dw(x) + x)`.

    dw = depthwise k x k conv -> BN -> ReLU, pw = 1x1 conv -> BN -> ReLU (both convs biased).
    """

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(channels, channels, kernel_size, groups=channels, bias=True)
        self.pointwise = ConvNormAct(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x) + x)


class RSU(nn.Module):
    """Residual U-block RSU-L (`height` = L), RSU-LF (`dilated`) or RSDPU (`depthwise_unit`).

    Args:
        in_channels, mid_channels, out_channels: the block's (in, mid, out) of the paper.
        height: L, the number of encoder convs of the inner U (7, 6, 5, 4 in U2-Net).
        dilated: RSU-LF: no pooling; dilations 1, 2, ..., 2^(L-1) down and back up.
        depthwise_unit: RSDPU: the stem is followed by `ResidualDepthwiseSeparable`, whose
            output feeds the inner U and is the block's residual.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        height: int = 7,
        dilated: bool = False,
        depthwise_unit: bool = False,
    ) -> None:
        super().__init__()
        if height < 2:
            raise ModelError(f"an RSU needs height >= 2, got {height}")
        self.stem = rebnconv(in_channels, out_channels)
        self.refine = ResidualDepthwiseSeparable(out_channels) if depthwise_unit else nn.Identity()
        dilations = [2**i for i in range(height)] if dilated else [1] * (height - 1) + [2]
        self.pool = nn.Identity() if dilated else nn.MaxPool2d(2, stride=2, ceil_mode=True)
        ins = [out_channels] + [mid_channels] * (height - 1)
        self.encoder = nn.ModuleList(
            rebnconv(c, mid_channels, d) for c, d in zip(ins, dilations, strict=True)
        )
        # decoder[i] mirrors encoder[i]; the shallowest one maps back to out_channels
        self.decoder = nn.ModuleList(
            rebnconv(2 * mid_channels, out_channels if i == 0 else mid_channels, dilations[i])
            for i in range(height - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.refine(self.stem(x))
        skips = []
        h = x
        for i, conv in enumerate(self.encoder):
            if 0 < i < len(self.encoder) - 1:
                h = self.pool(h)
            h = conv(h)
            skips.append(h)
        h = skips.pop()
        for conv in reversed(self.decoder):
            skip = skips.pop()
            h = conv(torch.cat([upsample_like(h, skip), skip], dim=1))
        return h + x
