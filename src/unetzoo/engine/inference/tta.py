"""Test-time augmentation: the symmetries of the square applied to a batch and undone on its
outputs (`Predictor` averages the outputs as probabilities)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...config import TTA_MODES
from ...errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]


def _flip(*dims: int) -> Transform:
    return lambda x: x.flip(dims) if dims else x


def _rot90(k: int) -> Transform:
    return lambda x: torch.rot90(x, k, (2, 3))


def tta_transforms(mode: str) -> list[tuple[Transform, Transform]]:
    """(transform, inverse) pairs on `B x C x H x W`: `flip` is the identity and the
    horizontal, vertical and double flips; `flip-rot90` adds the 90-degree rotations and
    the two diagonal reflections (all eight symmetries of the square)."""
    if mode not in TTA_MODES:
        raise ConfigError(f"unknown --tta {mode!r}; choose {', '.join(TTA_MODES)}")
    if mode == "none":
        return [(_flip(), _flip())]
    pairs = [(_flip(*d), _flip(*d)) for d in ((), (3,), (2,), (2, 3))]
    if mode == "flip-rot90":
        transpose = lambda x: x.transpose(2, 3)  # noqa: E731
        anti = lambda x: x.flip((2, 3)).transpose(2, 3)  # noqa: E731
        pairs += [(_rot90(1), _rot90(-1)), (_rot90(-1), _rot90(1)), (transpose, transpose),
                  (anti, anti)]
    return pairs
