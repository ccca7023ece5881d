"""The base class every model derives from: logits out, any H x W in."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..nn.padding import Output, run_padded


class SegmentationModel(nn.Module):
    """A segmentation network returning logits `B x num_classes x H x W` for any H x W.

    Subclasses implement `forward_padded` for inputs whose sides are multiples of
    `size_divisor`; `forward` pads at the bottom/right and crops the output back.
    Deep-supervised models return a list in training mode, main output first, and the
    main logits only in eval mode; they set `output_weights`, the loss weight of each output
    in that order, which the trainer uses.
    Models with attention maps also implement `attention_maps(x) -> list[Tensor]`.
    """

    size_divisor: int = 1
    output_weights: tuple[float, ...] | None = None

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward_padded(self, x: torch.Tensor) -> Output:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Output:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ModelError(f"{type(self).__name__} expects B x {self.in_channels} x H x W input, "
                             f"got shape {tuple(x.shape)}")
        return run_padded(self.forward_padded, x, multiple=self.size_divisor)
