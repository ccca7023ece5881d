"""Classic U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) and the encoder-decoder it defines.

`UNet` is the wiring of the paper's figure with pluggable parts, so that the variants that
only change a block (R2U-Net, SE U-Net) or gate the skips (Attention U-Net) reuse it:

    encoder:  block(in, w0) -> pool -> block(w0, w1) -> ... -> block(w_{n-2}, w_{n-1})
    decoder:  up(w_{i+1} -> w_i), [gate(skip)], block(cat[skip, up], w_i), ... -> 1x1 head
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from ..errors import ModelError
from ..nn.blocks import DoubleConv
from ..nn.factory import NormKind, UpKind, create_upsample
from .base import SegmentationModel
from .registry import register_model

BlockFactory = Callable[[int, int], nn.Module]
UpFactory = Callable[[int, int], nn.Module]
# gate(skip_channels, up_channels, coarse_channels) -> module(skip, g_up, g_coarse) -> skip'
GateFactory = Callable[[int, int, int], nn.Module]


class UNet(SegmentationModel):
    """The U-shaped encoder-decoder with skip connections.

    Args:
        widths: channels per level, shallow to deep (the last is the bottleneck).
        block: builds a level's block from (in_channels, out_channels).
        up: builds the x2 up-sampling from (coarse_channels, skip_channels).
        gate: optional skip gate from (skip, up, coarse) channels, called as
            `gate(skip, g_up, g_coarse)` and returning the gated skip.
        bottleneck_dropout: dropout at the end of the contracting path, as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        block: BlockFactory,
        up: UpFactory,
        gate: GateFactory | None = None,
        bottleneck_dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, num_classes)
        if len(widths) < 2:
            raise ModelError(f"a U-Net needs at least 2 levels, got widths {list(widths)}")
        self.size_divisor = 2 ** (len(widths) - 1)
        self.pool = nn.MaxPool2d(2)
        ins = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(block(i, o) for i, o in zip(ins, widths, strict=True))
        self.dropout = nn.Dropout2d(bottleneck_dropout) if bottleneck_dropout > 0 else nn.Identity()
        levels = list(reversed(range(len(widths) - 1)))
        self.ups = nn.ModuleList(up(widths[i + 1], widths[i]) for i in levels)
        self.gates = (nn.ModuleList(gate(widths[i], widths[i], widths[i + 1]) for i in levels)
                      if gate is not None else None)
        self.decoder = nn.ModuleList(block(2 * widths[i], widths[i]) for i in levels)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, stage in enumerate(self.encoder):
            x = stage(self.pool(x) if level else x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for i, (up, decode) in enumerate(zip(self.ups, self.decoder, strict=True)):
            skip, coarse = skips.pop(), x
            x = up(x)
            if self.gates is not None:
                skip = self.gates[i](skip, x, coarse)
            x = decode(torch.cat([skip, x], dim=1))
        return self.head(x)


def level_widths(base_channels: int, depth: int) -> list[int]:
    """Channels doubling per level: base, 2 base, ..., 2^(depth-1) base."""
    if depth < 2 or base_channels < 1:
        raise ModelError(f"need depth >= 2 and base_channels >= 1, got {depth}, {base_channels}")
    return [base_channels * 2**level for level in range(depth)]


def checked_widths(widths: Sequence[int]) -> list[int]:
    """Explicit channels per level as a list, refused unless 2+ levels of integers >= 1."""
    out = list(widths) if isinstance(widths, list | tuple) else []
    if len(out) < 2 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                                for w in out):
        raise ModelError(f"widths must be 2 or more channel counts >= 1 in a list, e.g. "
                         f"widths=[32,32,64,128,256]; got {widths!r}")
    return out


def resolve_widths(widths: Sequence[int] | None, base_channels: int | None, depth: int | None,
                   default_base: int, default_depth: int) -> list[int]:
    """Channels per level from explicit `widths`, or from `base_channels` doubled over `depth`.

    Args:
        widths: channels per level, shallow to deep, or None.
        base_channels, depth: the doubling form (None: `default_base`, `default_depth`).
        default_base, default_depth: the builder's defaults for the doubling form.

    Returns:
        One channel count per level, e.g. `[8, 16, 32]` for base 8 over depth 3.

    Raises:
        ModelError: `widths` given with `base_channels` or `depth` (from the user or a preset:
            one would be ignored), or invalid widths or depth.
    """
    if widths is None:
        return level_widths(default_base if base_channels is None else base_channels,
                            default_depth if depth is None else depth)
    both = [f"{k}={v}" for k, v in (("base_channels", base_channels), ("depth", depth))
            if v is not None]
    if both:
        raise ModelError(f"widths={widths!r} sets every level, so {' and '.join(both)} would be "
                         f"ignored: give widths or base_channels/depth (a --preset sets "
                         f"base_channels and depth too)")
    return checked_widths(widths)


@register_model(
    paper="Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
          "Segmentation. MICCAI 2015. arXiv:1505.04597",
    year=2015,
    adds="the U-shaped encoder-decoder with skip connections every other model builds on",
    presets={
        # The widespread same-padded BatchNorm PyTorch form: biased convs, nearest x2 + conv up.
        "reference": {"base_channels": 64, "depth": 5, "norm": "batch", "upsample": "nearest",
                      "bias": True},
        "tiny": {"base_channels": 8, "depth": 3},
    },
    reference_params={"reference": 34_527_041},
)
def unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int | None = None,
    depth: int | None = None,
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    dropout: float = 0.0,
    bias: bool | None = None,
    widths: Sequence[int] | None = None,
) -> UNet:
    """Classic U-Net: [3x3 conv -> norm -> ReLU] x 2 per level, 2x2 max-pool, x2 up-sampling.

    Defaults follow the paper (64-1024 widths, 2x2 transposed-conv "up-convolution") with
    same padding and batch norm, and no conv bias before a norm. `dropout` is applied at the
    end of the contracting path as in the paper. `preset="reference"` gives the widespread
    PyTorch form (34,527,041 parameters for in=3, out=1).

    Args:
        in_channels, num_classes: image channels C and output channels K (1 for binary).
        base_channels: width of the first level; level l has base_channels * 2^l
            (None: 64, or unused with `widths`).
        depth: number of levels (depth - 1 poolings; H and W are padded to 2^(depth-1);
            None: 5, or the length of `widths`).
        widths: channels per level, shallow to deep, instead of `base_channels` and `depth`
            (e.g. `[32, 32, 64, 128, 256]`, MONAI BasicUNet's encoder: full width at the
            first two levels for a tenth of the parameters of doubling from 32).
        norm: batch, instance, group or none (`unetzoo.nn.factory.NORMS`).
        upsample: transpose, nearest or bilinear (`unetzoo.nn.factory.UPSAMPLERS`).
        dropout: dropout probability at the end of the contracting path.
        bias: conv bias; None gives one only to convs without a norm after them.

    Returns:
        A `UNet`: `B x C x H x W` images of any H x W -> `B x K x H x W` logits.

    Raises:
        ModelError: an unknown norm or upsample, depth < 2, `widths` with fewer than 2
            levels or a width below 1, or `widths` together with `base_channels` or `depth`
            (via `create_model`).

    Example:
        >>> model = create_model("unet", 3, 1, preset="tiny").eval()
        >>> model(torch.randn(2, 3, 37, 45)).shape
        torch.Size([2, 1, 37, 45])
    """
    widths = resolve_widths(widths, base_channels, depth, 64, 5)
    return UNet(
        in_channels, num_classes, widths,
        block=partial(DoubleConv, norm=norm, bias=bias),
        up=partial(create_upsample, upsample, norm=norm, bias=bias),
        bottleneck_dropout=dropout,
    )
