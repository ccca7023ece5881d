"""DPSAU2-Net: U2-Net with residual depthwise-separable RSUs and split-attention blocks.

The U2-Net wiring (`U2Net`) with two changes:

    every stage:   RSDPU = RSU whose stem is followed by pw(dw(x) + x)   (7x7 depthwise)
    10 SA blocks:  on the pooled features entering encoder stages 2-6 (64, 128, 256, 512, 512
                   channels) and on the up-sampled features entering decoder stages 5-1
                   (512, 512, 256, 128, 64): ReLU(x + BN(1x1(SplAt(ReLU(BN(1x1 x))))))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..nn.rsu import RSU
from ..nn.split_attention import SplitAttentionBlock
from .registry import register_model
from .u2net import TINY_DECODER, TINY_ENCODER, U2NET_DECODER, U2NET_ENCODER, U2Net, Widths


@register_model(
    paper="Enhanced U2-Net with Residual Depthwise Separable and Split-Attention Blocks for "
          "Precise Medical Image Segmentation. The Visual Computer. "
          "Code: github.com/WKSalt/DPSAU2-Net",
    year=2024,
    adds="U2-Net with a residual depthwise-separable unit in every RSU and ten ResNeSt "
         "split-attention blocks on the features entering each stage",
    presets={
        "reference": {},
        "tiny": {"encoder_widths": TINY_ENCODER, "decoder_widths": TINY_DECODER},
    },
    # the public code's 66,198,925 less its 5,501,568 parameters of unused layers
    reference_params={"reference": 60_697_357},
)
def dpsau2net(
    in_channels: int = 3,
    num_classes: int = 1,
    encoder_widths: Widths = U2NET_ENCODER,
    decoder_widths: Widths = U2NET_DECODER,
    heights: Sequence[int] = (7, 6, 5, 4),
    radix: int = 2,
    deep_supervision: bool = False,
) -> U2Net:
    """DPSAU2-Net: U2-Net of RSDPU blocks with ten split-attention (radix 2) bottlenecks.

    Defaults are the reference model: 60,697,357 parameters for in=3, out=1, i.e. the public
    code's 66,198,925 without its 5,501,568 parameters of layers that forward never uses.
    As there, the split-attention blocks keep their width (no bottleneck reduction) and the
    split-attention conv has a bias. The forward returns the fused logits only, as in the
    reference; `deep_supervision=True` returns [fused, side 1..6] in training mode like
    `u2net`. `radix=1` turns split attention into a sigmoid gate (SE-like); `radix` must
    divide the stage widths. A single-image training batch works: the attention MLP's BN then
    uses its running statistics (see `PooledBatchNorm2d`).

    Args:
        in_channels, num_classes, encoder_widths, decoder_widths, heights: as `u2net`.
        radix: splits of each split-attention conv (must divide the stage widths).
        deep_supervision: return [fused, side 1..n] logits in training mode.

    Returns:
        A `U2Net` of RSDPU blocks with split attention: `B x K x H x W` fused logits.

    Raises:
        ModelError: a radix that does not divide a stage width, or tables as `u2net`.

    Example:
        >>> model = create_model("dpsau2net", preset="tiny").train()
        >>> model(torch.randn(2, 3, 20, 28)).shape  # fused logits only, also in training
        torch.Size([2, 1, 20, 28])
    """
    return U2Net(
        in_channels, num_classes, encoder_widths, decoder_widths, heights,
        block=partial(RSU, depthwise_unit=True),
        attention=partial(SplitAttentionBlock, radix=radix, expansion=1, bias=True),
        deep_supervision=deep_supervision,
    )
