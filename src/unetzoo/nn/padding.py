"""Pad inputs to the size a network needs and crop its outputs back, so any H x W works."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Output = torch.Tensor | list[torch.Tensor]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the last two dims at the bottom/right up to the next multiple of `multiple`."""
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def crop_to(out: Output, height: int, width: int) -> Output:
    """Crop a tensor (or each tensor of a list) back to `height` x `width`."""
    if isinstance(out, (list, tuple)):
        return [o[..., :height, :width] for o in out]
    return out[..., :height, :width]
