"""Sparse-UNet: a U-Net with sparse attention blocks in the encoder, bottleneck and decoder.

The seed describes "a U-Net with Sparse Attention blocks in the encoder, bottleneck and
decoder, a transposed-conv decoder and a single-conv head". Its public code is dense N x N
attention with a random mask (still O(N^2)), so only the intent is kept; the attention is
BiFormer's bi-level routing attention (content-adaptive, about O(N^(4/3))):

    level block:  DoubleConv(in, out) -> SparseAttentionBlock(out) x blocks
    wiring:       `UNet` (max-pool down, 2x2 transposed-conv up, concat skip, 1x1 conv head)
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import ModelError
from ..nn.blocks import DoubleConv
from ..nn.factory import NormKind, create_upsample
from ..nn.sparse_attention import SparseAttentionBlock
from .registry import register_model
from .unet import UNet, level_widths


@register_model(
    paper="Sparse-UNet (seed: U-Net with Sparse Attention blocks in encoder, bottleneck and "
          "decoder); attention from Zhu, Wang, Ke, Zhang, Lau. BiFormer: Vision Transformer "
          "with Bi-Level Routing Attention. CVPR 2023. arXiv:2303.08810",
    year=2023,
    adds="BiFormer blocks (bi-level top-k region routing attention, sub-quadratic) after the "
         "conv block of every encoder, bottleneck and decoder level",
    presets={
        "reference": {"base_channels": 32, "depth": 5},
        "tiny": {"base_channels": 8, "depth": 3, "attention_from": 0, "head_dim": 8, "topk": 2},
    },
    reference_params={"reference": 12_172_385},
)
def sparse_unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int = 32,
    depth: int = 5,
    attention_from: int = 1,
    blocks: int = 1,
    topk: int = 4,
    region_size: int | None = None,
    head_dim: int = 32,
    mlp_ratio: float = 3.0,
    norm: NormKind = "batch",
) -> UNet:
    """Sparse-UNet: U-Net whose level blocks are a double conv followed by BiFormer blocks.

    Levels `attention_from` .. depth-1 (level 0 is full resolution, depth-1 the bottleneck)
    get `blocks` sparse attention blocks after their DoubleConv, in the encoder and in the
    decoder. Each has max(1, width // head_dim) heads, routes every region to `topk` regions,
    and uses regions whose side grows as N^(1/6) with the map (`region_size=None`) or a fixed
    side. Up-sampling is a 2x2 transposed conv, the head a single 1x1 conv giving logits.

    `attention_from=1` by default: attention starts at half resolution. Sub-quadratic
    attention would run at full resolution too (`attention_from=0`), but there a BiFormer
    block (with its MLP, norms and depthwise convs over every pixel) costs more than the rest
    of the network: at 256 x 256 on a 2-core CPU, training steps took about 2.5x longer than
    with `attention_from=1`, which already attends over the same content with 4x fewer tokens.

    There is no reference implementation to match (the seed's code is dense attention that
    cannot run), so `preset="reference"` is this project's own recommended full-size
    configuration and its count (12,172,385 for in=3, out=1) is this project's definition:
    widths 32-512 (5 levels), one block per level from level 1 down, 4 routed regions, and
    head dim 32 and MLP ratio 3 as in BiFormer.

    Args:
        in_channels, num_classes, base_channels, depth, norm: as `unet`.
        attention_from: first level with sparse attention blocks (0: full resolution).
        blocks: sparse attention blocks per attending level.
        topk: regions each region attends to.
        region_size: side of the routing regions in tokens (None: grows with the map).
        head_dim: channels per attention head.
        mlp_ratio: hidden width of each block's MLP relative to its channels.

    Returns:
        A `UNet` with BiFormer blocks (logits as `unet`).

    Raises:
        ModelError: attention_from outside [0, depth - 1], blocks or head_dim < 1.

    Example:
        >>> model = create_model("sparse_unet", preset="tiny", topk=1).eval()
        >>> model(torch.randn(1, 3, 21, 50)).shape
        torch.Size([1, 1, 21, 50])
    """
    widths = level_widths(base_channels, depth)
    if not 0 <= attention_from < depth:
        raise ModelError(f"attention_from must be in [0, {depth - 1}], got {attention_from}")
    if blocks < 1 or head_dim < 1:
        raise ModelError(f"blocks and head_dim must be >= 1, got {blocks}, {head_dim}")

    def level_block(c_in: int, c_out: int) -> nn.Module:
        attend = widths.index(c_out) >= attention_from
        return nn.Sequential(
            DoubleConv(c_in, c_out, norm=norm),
            *(SparseAttentionBlock(c_out, max(1, c_out // head_dim), topk, region_size,
                                   mlp_ratio) for _ in range(blocks if attend else 0)),
        )

    return UNet(in_channels, num_classes, widths, block=level_block,
                up=partial(create_upsample, "transpose"))
