"""Pad inputs to the size a network needs and crop its outputs back, so any H x W works.

The one pad-and-crop rule of unetzoo: the models (`SegmentationModel` pads to its
`size_divisor`), exported graphs (traced through the model's own padding, so height and
width stay dynamic in ONNX) and graphs fixed to one input size
(`engine.backends.ExportedModule`) all use `run_padded`. The pads are traceable: under
`torch.jit.trace` / `torch.onnx.export` they are recorded from the traced sizes (always,
even when the traced input needs none), so a graph traced at one size pads correctly at
every other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Output = torch.Tensor | list[torch.Tensor]


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad the last two dims of `x` at the bottom/right to `height` x `width`.

    Traces with dynamic sizes: under `torch.jit.trace` (and so `torch.onnx.export`) the pad
    amounts are computed from the traced shape and the pad is always recorded, even when it
    is zero at the tracing size.

    Raises:
        ValueError: `x` is larger than `height` x `width`.
    """
    h, w = x.shape[-2:]
    tracing = torch.jit.is_tracing()
    if not tracing:
        if h > height or w > width:
            raise ValueError(f"input {h} x {w} is larger than {height} x {width}")
        if h == height and w == width:
            return x
    return F.pad(x, (0, width - w, 0, height - h))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the last two dims at the bottom/right up to the next multiple of `multiple`
    (traceable with dynamic sizes, see `pad_to`).

    Args:
        x: `... x H x W`.
        multiple: the size divisor (pixels); 1 or less returns `x` unchanged.

    Returns:
        `... x ceil(H / multiple) * multiple x ceil(W / multiple) * multiple`.
    """
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    return pad_to(x, h + (-h) % multiple, w + (-w) % multiple)


def crop_to(out: Output, height: int, width: int) -> Output:
    """Crop a tensor (or each tensor of a list) back to `height` x `width`."""
    if isinstance(out, (list, tuple)):
        return [o[..., :height, :width] for o in out]
    return out[..., :height, :width]


def run_padded(forward: Callable[[torch.Tensor], Output], x: torch.Tensor,
               multiple: int = 1, size: tuple[int, int] | None = None) -> Output:
    """`forward` on `x` zero-padded at the bottom/right, cropped back to `x`'s H x W.

    Args:
        forward: maps `B x C x H' x W'` to `B x K x H' x W'` (or a list of such).
        x: `B x C x H x W`.
        multiple: pad H and W up to multiples of this (a network's size divisor).
        size: pad to exactly this (height, width) instead (a graph fixed to one size).

    Returns:
        The output(s) of `forward`, `B x K x H x W`.

    Raises:
        ValueError: `x` is larger than `size`.
    """
    height, width = x.shape[-2:]
    padded = pad_to(x, *size) if size is not None else pad_to_multiple(x, multiple)
    return crop_to(forward(padded), height, width)
