"""U2-Net and U2-Netp (Qin et al., Pattern Recognition 2020): a U-Net of residual U-blocks.

    encoder:  En1 = RSU(x), En_i = RSU(pool En_{i-1})         pool: 2x2 max, ceil mode
    decoder:  De_i = RSU(cat[up(De_{i+1}), En_i])             De_6 := En_6, up: bilinear to size
    sides:    S_i = up(3x3 conv(De_i)) for i = 1..5, S_6 = up(3x3 conv(En_6))
    fused:    S_0 = 1x1 conv(cat[S_1..S_6])

Levels 1-4 use RSU-7, -6, -5, -4 and levels 5-6 the dilated RSU-4F. `U2Net` also takes the
block kind and optional attention blocks on the features entering each stage, which is how
DPSAU2-Net reuses this wiring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn

from ..errors import ModelError
from ..nn.rsu import RSU, upsample_like
from .base import SegmentationModel
from .registry import register_model

# Factory of a channel-preserving block applied to the features entering a stage.
AttentionFactory = Callable[[int], nn.Module]
# (mid, out) channels of one stage.
Widths = Sequence[Sequence[int]]


class RSUFactory(Protocol):
    def __call__(self, in_channels: int, mid_channels: int, out_channels: int, height: int,
                 dilated: bool) -> nn.Module: ...


def _no_attention(channels: int) -> nn.Module:
    return nn.Identity()


class U2Net(SegmentationModel):
    """The nested U-structure: n RSU stages down, n-1 up, n side outputs and their fusion.

    Args:
        encoder_widths: (mid, out) channels of each encoder stage, shallow to deep.
        decoder_widths: (mid, out) channels of decoder stages 1 .. n-1, shallow to deep;
            decoder stage i has the RSU kind of encoder stage i.
        heights: RSU heights L of the first levels; the deeper levels use RSU-4F.
        block: builds an RSU from (in, mid, out, height, dilated), e.g. RSU or RSDPU.
        attention: optional channel-preserving block applied to the pooled features entering
            encoder stages 2..n and to the up-sampled features entering each decoder stage.
        deep_supervision: in training mode return [fused, side 1, ..., side n] logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder_widths: Widths,
        decoder_widths: Widths,
        heights: Sequence[int] = (7, 6, 5, 4),
        block: RSUFactory = RSU,
        attention: AttentionFactory | None = None,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(in_channels, num_classes)
        levels = len(encoder_widths)
        if levels < 2 or len(decoder_widths) != levels - 1 or len(heights) > levels:
            raise ModelError(f"need >= 2 encoder stages, one decoder stage fewer and at most one "
                             f"height per level; got {levels} encoder, {len(decoder_widths)} "
                             f"decoder stages and {len(heights)} heights")
        kinds = [(h, False) for h in heights] + [(4, True)] * (levels - len(heights))
        enc_out = [out for _, out in encoder_widths]
        dec_out = [out for _, out in decoder_widths]
        enc_in = [in_channels, *enc_out[:-1]]
        coarse = [*dec_out[1:], enc_out[-1]]  # channels coming up into decoder stage i
        self.encoder = nn.ModuleList(
            block(c_in, mid, out, height=h, dilated=d)
            for c_in, (mid, out), (h, d) in zip(enc_in, encoder_widths, kinds, strict=True)
        )
        self.decoder = nn.ModuleList(
            block(up + skip, mid, out, height=h, dilated=d)
            for up, skip, (mid, out), (h, d)
            in zip(coarse, enc_out[:-1], decoder_widths, kinds[:-1], strict=True)
        )
        attend = attention or _no_attention
        self.encoder_attention = nn.ModuleList(attend(c) for c in enc_out[:-1])
        self.decoder_attention = nn.ModuleList(attend(c) for c in coarse)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.side_heads = nn.ModuleList(
            nn.Conv2d(c, num_classes, 3, padding=1) for c in [*dec_out, enc_out[-1]]
        )
        self.fuse = nn.Conv2d(levels * num_classes, num_classes, 1)
        self.deep_supervision = deep_supervision
        self.output_weights = (1.0,) * (levels + 1) if deep_supervision else None

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        image = x
        skips = []
        for level, stage in enumerate(self.encoder):
            if level:
                x = self.encoder_attention[level - 1](self.pool(x))
            x = stage(x)
            skips.append(x)
        features = [skips.pop()]  # En_n, then De_{n-1} .. De_1
        for level in reversed(range(len(self.decoder))):
            skip = skips.pop()
            up = self.decoder_attention[level](upsample_like(x, skip))
            x = self.decoder[level](torch.cat([up, skip], dim=1))
            features.append(x)
        sides = [upsample_like(head(f), image)
                 for head, f in zip(self.side_heads, reversed(features), strict=True)]
        fused = self.fuse(torch.cat(sides, dim=1))
        if self.training and self.deep_supervision:
            return [fused, *sides]
        return fused


U2NET_ENCODER = ((32, 64), (32, 128), (64, 256), (128, 512), (256, 512), (256, 512))
U2NET_DECODER = ((16, 64), (32, 64), (64, 128), (128, 256), (256, 512))
U2NETP_ENCODER = ((16, 64),) * 6
U2NETP_DECODER = ((16, 64),) * 5
TINY_ENCODER = ((4, 8), (4, 8), (8, 16), (8, 16), (8, 16), (8, 16))
TINY_DECODER = ((4, 8), (4, 8), (4, 8), (8, 16), (8, 16))
_PAPER = ("Qin, Zhang, Huang, Dehghan, Zaiane, Jagersand. U2-Net: Going Deeper with Nested "
          "U-Structure for Salient Object Detection. Pattern Recognition 106, 2020. "
          "arXiv:2005.09007")


@register_model(
    paper=_PAPER,
    year=2020,
    adds="residual U-blocks (a U-Net inside every stage) and fused deep supervision from six "
         "side outputs",
    presets={"reference": {},
             "tiny": {"encoder_widths": TINY_ENCODER, "decoder_widths": TINY_DECODER}},
    reference_params={"reference": 44_009_869},
)
def u2net(
    in_channels: int = 3,
    num_classes: int = 1,
    encoder_widths: Widths = U2NET_ENCODER,
    decoder_widths: Widths = U2NET_DECODER,
    heights: Sequence[int] = (7, 6, 5, 4),
    deep_supervision: bool = True,
) -> U2Net:
    """U2-Net: six RSU encoder stages, five RSU decoder stages, six side outputs fused by 1x1.

    Defaults are the paper's full model (44,009,869 parameters for in=3, out=1). In training
    mode it returns the seven logit maps [fused, side 1..6] with loss weights 1 each (the
    paper sums BCE over all seven); in eval mode the fused logits. The reference code applies
    a sigmoid to every map; here the model returns logits and the loss applies it.
    Any input size works (ceil-mode pooling, up-sampling to the skip's size).

    Args:
        in_channels, num_classes: image channels C and output channels K (1 for binary).
        encoder_widths: (mid, out) channels of each encoder stage, shallow to deep.
        decoder_widths: (mid, out) channels of decoder stages 1..n-1.
        heights: RSU heights of the first levels (the deeper ones are RSU-4F).
        deep_supervision: return [fused, side 1..n] logits in training mode.

    Returns:
        A `U2Net`: `B x K x H x W` fused logits in eval mode; in training mode the list
        [fused, side 1, ..., side 6] of such maps.

    Raises:
        ModelError: tables of inconsistent lengths, or a height below 2.

    Example:
        >>> model = create_model("u2net", preset="tiny").train()
        >>> [tuple(o.shape) for o in model(torch.randn(2, 3, 33, 47))][:2]
        [(2, 1, 33, 47), (2, 1, 33, 47)]
    """
    return U2Net(in_channels, num_classes, encoder_widths, decoder_widths, heights,
                 deep_supervision=deep_supervision)


@register_model(
    paper=_PAPER,
    year=2020,
    adds="the small U2-Net: every stage at mid 16 / out 64 channels (1.1 M parameters)",
    presets={"reference": {},
             "tiny": {"encoder_widths": ((4, 8),) * 6, "decoder_widths": ((4, 8),) * 5}},
    reference_params={"reference": 1_131_181},
)
def u2netp(
    in_channels: int = 3,
    num_classes: int = 1,
    encoder_widths: Widths = U2NETP_ENCODER,
    decoder_widths: Widths = U2NETP_DECODER,
    heights: Sequence[int] = (7, 6, 5, 4),
    deep_supervision: bool = True,
) -> U2Net:
    """U2-Netp: the U2-Net wiring with every RSU at mid 16 / out 64 channels.

    Defaults are the paper's small model (1,131,181 parameters for in=3, out=1); outputs as
    `u2net`.

    Args:
        in_channels, num_classes, encoder_widths, decoder_widths, heights,
        deep_supervision: as `u2net`.

    Returns:
        A `U2Net`, outputs as `u2net`.

    Raises:
        ModelError: as `u2net`.

    Example:
        >>> count_parameters(create_model("u2netp", preset="reference"))
        1131181
    """
    return u2net(in_channels, num_classes, encoder_widths, decoder_widths, heights,
                 deep_supervision)
