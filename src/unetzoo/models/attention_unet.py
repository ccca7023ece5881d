"""Attention U-Net (Oktay et al. 2018): U-Net whose skips pass through additive attention gates.

    encoder:  the U-Net encoder
    decoder:  up(coarse) -> gate(skip, up, coarse) -> block(cat[gated skip, up]) ... -> 1x1 head

`AttentionUNet` is that wiring (the `UNet` with a gate at every skip) plus `attention_maps`;
R2AttU-Net reuses it with recurrent residual blocks.
"""

from __future__ import annotations

from functools import partial

import torch

from ..errors import ModelError
from ..nn.attention_gate import AttentionGate
from ..nn.blocks import DoubleConv
from ..nn.factory import GateKind, NormKind, UpKind, create_upsample, gate_factory
from .registry import register_model
from .unet import BlockFactory, GateFactory, UNet, UpFactory, level_widths


class AttentionUNet(UNet):
    """A `UNet` with an `AttentionGate` on every skip; `attention_maps` returns their maps."""

    def __init__(self, in_channels: int, num_classes: int, widths: list[int],
                 block: BlockFactory, up: UpFactory, gate: GateFactory) -> None:
        super().__init__(in_channels, num_classes, widths, block=block, up=up, gate=gate)
        if not all(isinstance(g, AttentionGate) for g in self.gates):
            raise ModelError("AttentionUNet gates must be AttentionGate modules")

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The attention coefficients of every gate for input `x`, coarse to fine.

        One map per gated level l = depth-2, ..., 0 (the bottleneck has no skip), each
        B x 1 x ceil(H / 2^l) x ceil(W / 2^l) with values in [0, 1]: the gate's map cropped to
        the part of the padded input that covers `x`; the last map is H x W. Runs one ordinary
        forward in the model's current mode (call `eval()` first, and wrap in
        `torch.no_grad()` unless gradients are wanted).
        """
        gates: list[AttentionGate] = list(self.gates)
        for g in gates:
            g.record = True
        try:
            self(x)
            maps = [g.last_map for g in gates]
        finally:
            for g in gates:
                g.record, g.last_map = False, None
        height, width = x.shape[-2:]
        depth = len(self.encoder)
        return [m[..., : -(-height // 2 ** level), : -(-width // 2 ** level)]
                for m, level in zip(maps, range(depth - 2, -1, -1), strict=True)]


@register_model(
    paper="Oktay et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018. "
          "arXiv:1804.03999",
    year=2018,
    adds="additive attention gates that re-weight every skip connection pixel by pixel",
    presets={
        # The widespread PyTorch form: U-Net reference blocks and same-level gates.
        "reference": {"base_channels": 64, "depth": 5, "norm": "batch", "upsample": "nearest",
                      "bias": True, "gate": "same_level"},
        # The same network with the paper's coarse-level gates (this project's count).
        "reference_coarse_gate": {"base_channels": 64, "depth": 5, "norm": "batch",
                                  "upsample": "nearest", "bias": True, "gate": "coarse"},
        "tiny": {"base_channels": 8, "depth": 3},
    },
    reference_params={"reference": 34_878_573, "reference_coarse_gate": 35_572_485},
)
def attention_unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int = 64,
    depth: int = 5,
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    bias: bool | None = None,
    gate: GateKind = "coarse",
) -> AttentionUNet:
    """Attention U-Net: U-Net blocks with an additive attention gate on every skip connection.

    `gate="coarse"` (default) is the paper's gate: the gating signal is the decoder feature
    one level below, before up-sampling; W_x is a 2x2 stride-2 conv, so the attention is
    computed on the coarse grid and resampled bilinearly. `gate="same_level"` is the
    widespread PyTorch gate fed by the already up-sampled feature, with a norm after each
    1x1 conv.
    The coarse gate is the default because (1) it is the mechanism the paper describes and
    evaluates, gated by coarse-scale context; (2) its intermediate tensors live on the coarse
    grid, a quarter of the pixels: it needs 3/4 of the same-level gate's conv multiply-adds,
    and the four gates add about a tenth as much activation memory kept for backward
    (+1.1 MB vs +11.4 MB over U-Net at 128 x 128, batch 1; benchmarks/gated_unets.py);
    (3) it has no norm inside, so its maps do not depend on batch statistics and behave the
    same in training and evaluation. Its price is 2% more parameters (35,572,485 vs
    34,878,573 at reference width).
    Other defaults follow `unet` (transposed-conv up-sampling, no conv bias before a norm).
    `preset="reference"` gives the widespread PyTorch form (34,878,573 parameters).

    Args:
        in_channels, num_classes, base_channels, depth, norm, upsample, bias: as `unet`.
        gate: coarse or same_level (`unetzoo.nn.factory.GATES`).

    Returns:
        An `AttentionUNet` (logits as `unet`); `attention_maps(x)` gives one
        `B x 1 x h x w` map of coefficients in [0, 1] per gated level, coarse to fine.

    Raises:
        ModelError: an unknown gate, norm or upsample (via `create_model`).

    Example:
        >>> model = create_model("attention_unet", preset="tiny").eval()  # depth 3
        >>> [m.shape[-2:] for m in model.attention_maps(torch.randn(1, 3, 37, 45))]
        [torch.Size([19, 23]), torch.Size([37, 45])]
    """
    widths = level_widths(base_channels, depth)
    return AttentionUNet(
        in_channels, num_classes, widths,
        block=partial(DoubleConv, norm=norm, bias=bias),
        up=partial(create_upsample, upsample, norm=norm, bias=bias),
        gate=gate_factory(gate, norm=norm, bias=bias),
    )
