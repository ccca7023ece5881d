"""Convolution blocks and the up-sampling wrapper shared by the U-Net family."""

from __future__ import annotations

import torch
from torch import nn

from .norms import NormKind, create_norm


class ConvNormAct(nn.Sequential):
    """conv(k x k, same padding) -> norm -> ReLU.

    `bias=None` gives the conv a bias only when no norm follows it (a bias before a
    normalisation is cancelled by it); reference presets pass `bias=True` to match counts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: NormKind = "batch",
        bias: bool | None = None,
        dilation: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2

        conv_bias = norm == "none" if bias is None else bias
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=conv_bias),
            create_norm(norm, out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """The U-Net block: [3x3 conv -> norm -> ReLU] x 2, optional dropout at the end."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: NormKind = "batch",
        bias: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, out_channels, norm=norm, bias=bias),
            ConvNormAct(out_channels, out_channels, norm=norm, bias=bias),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpSample(nn.Module):
    """x2 up-sampling mapping `in_channels` to `out_channels`; `create_upsample` builds it.

    Holds the up-sampling module as `up` (the key checkpoints store its weights under).
    """

    def __init__(self, up: nn.Module) -> None:
        super().__init__()
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)
