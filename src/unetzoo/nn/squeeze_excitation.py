"""Squeeze-and-excitation recalibration: channel SE (Hu et al. 2018) and scSE (Roy et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError

SE_COMBINES: tuple[str, ...] = ("add", "max")  # how scSE joins its two branches


def se_hidden(channels: int, reduction: int, min_hidden: int = 4) -> int:
    """Hidden units of the excitation MLP: channels // reduction, at least `min_hidden`."""
    if reduction < 1:
        raise ModelError(f"reduction must be >= 1, got {reduction}")
    return max(channels // reduction, min_hidden)


class ChannelSE(nn.Module):
    """cSE: x * sigmoid(FC(relu(FC(GAP(x))))), FC: C -> hidden -> C with biases (Hu et al.)."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 4) -> None:
        super().__init__()
        hidden = se_hidden(channels, reduction, min_hidden)
        self.excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(x)


class SpatialSE(nn.Module):
    """sSE: x * sigmoid(1x1 conv C -> 1 (x)), one weight per pixel shared across channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.excite = nn.Sequential(nn.Conv2d(channels, 1, kernel_size=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(x)


class SCSE(nn.Module):
    """scSE: cSE(x) and sSE(x) combined by element-wise addition (Roy et al.) or maximum."""

    def __init__(self, channels: int, reduction: int = 16, combine: str = "add",
                 min_hidden: int = 4) -> None:
        super().__init__()
        if combine not in SE_COMBINES:
            raise ModelError(f"unknown combine {combine!r}; choose one of "
                             f"{', '.join(SE_COMBINES)}")
        self.combine = combine
        self.cse = ChannelSE(channels, reduction, min_hidden)
        self.sse = SpatialSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cse(x), self.sse(x)
        return c + s if self.combine == "add" else torch.maximum(c, s)

