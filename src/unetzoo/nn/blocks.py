"""Convolution blocks, normalisation and up-sampling shared by the U-Net family."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

NormKind = Literal["batch", "instance", "group", "none"]
UpKind = Literal["transpose", "nearest", "bilinear"]
BlockFactory = Callable[[int, int], nn.Module]

NORM_KINDS: tuple[str, ...] = ("batch", "instance", "group", "none")
UP_KINDS: tuple[str, ...] = ("transpose", "nearest", "bilinear")


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """A 2D normalisation layer of the given kind (group norm: gcd(32, channels) groups)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORM_KINDS)}")


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
            make_norm(norm, out_channels),
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
    """x2 up-sampling that maps `in_channels` to `out_channels`.

    transpose: the paper's 2x2 "up-convolution". nearest / bilinear: interpolate, then
    3x3 conv -> norm -> ReLU (the widespread PyTorch form).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kind: UpKind = "transpose",
        norm: NormKind = "batch",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        if kind == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        elif kind in ("nearest", "bilinear"):
            interp = nn.Upsample(scale_factor=2, mode=kind,
                                 align_corners=False if kind == "bilinear" else None)
            self.up = nn.Sequential(interp, ConvNormAct(in_channels, out_channels, norm=norm,
                                                        bias=bias))
        else:
            raise ValueError(f"unknown upsample {kind!r}; choose one of {', '.join(UP_KINDS)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)
