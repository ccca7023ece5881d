"""Sliding-window tiling: where tiles start and how their outputs are weighted where they
overlap (Gaussian importance, as nnU-Net and MONAI's sliding-window inferer blend them)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=16)
def gaussian_axis(n: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """One axis of the tile weight: a Gaussian (sigma = sigma_scale x n) peaking at 1 in the
    centre, floored at 1e-3 so that no pixel has zero weight."""
    coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
    weight = torch.exp(-0.5 * (coords / max(sigma_scale * n, 1e-3)) ** 2)
    return (weight / weight.max()).clamp_min(1e-3)


def gaussian_importance(height: int, width: int) -> torch.Tensor:
    """The tile weight (outer product of two axes): tile borders, where context is missing,
    count less where tiles overlap."""
    return torch.outer(gaussian_axis(height), gaussian_axis(width))


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with at least the given
    fractional overlap, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    count = math.ceil((length - tile) / stride) + 1
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]
