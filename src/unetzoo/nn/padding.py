"""Pad inputs to the size a network needs and crop its outputs back, so any H x W works.

The one pad-and-crop rule of unetzoo (models, export and exported-graph runners use it).
`pad_to_multiple` is traceable: under `torch.jit.trace` / `torch.onnx.export` it records the
pad from the traced sizes (always, even when the traced input needs none), so a graph traced
at one size pads correctly at every other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Output = torch.Tensor | list[torch.Tensor]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the last two dims at the bottom/right up to the next multiple of `multiple`.

    Args:
        x: `... x H x W`.
        multiple: the size divisor (pixels); 1 or less returns `x` unchanged.

    Returns:
        `... x ceil(H / multiple) * multiple x ceil(W / multiple) * multiple`.
    """
    if multiple <= 1:
        return x
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if not torch.jit.is_tracing() and pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def crop_to(out: Output, height: int, width: int) -> Output:
    """Crop a tensor (or each tensor of a list) back to `height` x `width` (top-left kept)."""
    if isinstance(out, (list, tuple)):
        return [o[..., :height, :width] for o in out]
    return out[..., :height, :width]
