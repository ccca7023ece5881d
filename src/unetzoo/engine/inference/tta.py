"""Test-time augmentation: the symmetries of the square applied to a batch and undone on its
outputs (`Predictor` averages the outputs as probabilities).

Outputs that are vectors in the image plane (HoVer-Net's horizontal and vertical offsets)
change with the symmetry as well as move with it: a horizontal flip negates the horizontal
offset, a transpose swaps the two. Given the channels of such (x, y) pairs, the inverse also
maps each pair back by the symmetry's 2 x 2 matrix, which is read off the symmetry itself (how
it moves a field of centred coordinates), so no case is written out by hand."""

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


def vector_matrix(transform: Transform) -> torch.Tensor:
    """The 2 x 2 matrix A with which `transform` acts on (x, y) vectors: for a model whose
    outputs are vectors, model(transform(image)) = A . transform(model(image)) per pixel.
    Read off a square field of centred (x, y) coordinates, which the symmetry maps onto
    itself: field = A . transform(field)."""
    c = torch.arange(5, dtype=torch.float64) - 2
    field = torch.stack([c.expand(5, 5), c[:, None].expand(5, 5)])[None]  # 1 x 2 x 5 x 5
    moved = transform(field)
    flat, flat_moved = field.reshape(2, -1), moved.reshape(2, -1)
    return (flat @ torch.linalg.pinv(flat_moved)).round().float()


def _undo_vectors(inverse: Transform, matrix: torch.Tensor,
                  vectors: tuple[tuple[int, int], ...]) -> Transform:
    undo = torch.linalg.inv(matrix)

    def apply(x: torch.Tensor) -> torch.Tensor:
        x = inverse(x).clone()
        for pair in vectors:
            x[:, list(pair)] = torch.einsum("ij,bjhw->bihw", undo.to(x.dtype), x[:, list(pair)])
        return x
    return apply


def tta_transforms(mode: str, vectors: tuple[tuple[int, int], ...] = ()
                   ) -> list[tuple[Transform, Transform]]:
    """(transform, inverse) pairs on `B x C x H x W`: `flip` is the identity and the
    horizontal, vertical and double flips; `flip-rot90` adds the 90-degree rotations and
    the two diagonal reflections (all eight symmetries of the square).

    Args:
        mode: `none`, `flip` or `flip-rot90`.
        vectors: channel index pairs (x, y) of outputs that are vectors in the image plane;
            each inverse also maps them back by the symmetry's matrix (`vector_matrix`).

    Raises:
        ConfigError: an unknown mode.
    """
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
    if vectors:
        pairs = [(t, _undo_vectors(inv, vector_matrix(t), vectors)) for t, inv in pairs]
    return pairs
