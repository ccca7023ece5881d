"""R2U-Net and R2AttU-Net (Alom et al. 2018): U-Net with recurrent residual conv blocks.

    every block:  RRCNN = 1x1 conv -> x;  x + RecurrentConv(RecurrentConv(x))
    R2U-Net:      the U-Net wiring with RRCNN blocks
    R2AttU-Net:   the Attention U-Net wiring (a gate on every skip) with RRCNN blocks
"""

from __future__ import annotations

from functools import partial

from ..nn.factory import GateKind, NormKind, UpKind, create_upsample, gate_factory
from ..nn.recurrent import RRCNNBlock
from .attention_unet import AttentionUNet
from .registry import register_model
from .unet import UNet, level_widths

PAPER = ("Alom, Hasan, Yakopcic, Taha, Asari. Recurrent Residual Convolutional Neural Network "
         "based on U-Net (R2U-Net) for Medical Image Segmentation. arXiv:1802.06955, 2018")
# The widespread PyTorch form: biased convs + batch norm, nearest x2 + conv up-sampling.
REFERENCE = {"base_channels": 64, "depth": 5, "norm": "batch", "upsample": "nearest",
             "bias": True}
TINY = {"base_channels": 8, "depth": 3}


@register_model(
    paper=PAPER,
    year=2018,
    adds="recurrent residual conv blocks (RRCNN) in place of the double conv",
    presets={"reference": REFERENCE, "tiny": TINY},
    reference_params={"reference": 39_091_393},
)
def r2unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int = 64,
    depth: int = 5,
    t: int = 2,
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    bias: bool | None = None,
) -> UNet:
    """R2U-Net: U-Net whose every block is a recurrent residual conv block (RRCNN).

    `t` is the number of recurrence steps of each recurrent conv layer (default 2, as in the
    paper); the weights are shared across steps, so `t` changes the computation, not the
    parameter count. Feed-forward and recurrent weights are one shared conv (the widespread
    PyTorch form; the paper's RCL has separate ones). Other defaults follow `unet`
    (transposed-conv up-sampling, no conv bias before a norm). `preset="reference"` gives the
    widespread PyTorch form (39,091,393 parameters).

    Args:
        in_channels, num_classes, base_channels, depth, norm, upsample, bias: as `unet`.
        t: recurrence steps of each recurrent conv layer (its weights are shared by steps).

    Returns:
        A `UNet` of RRCNN blocks (logits as `unet`).

    Raises:
        ModelError: t < 1, or an unknown norm or upsample (via `create_model`).

    Example:
        >>> x = torch.randn(1, 3, 32, 32)
        >>> count_parameters(create_model("r2unet", preset="tiny", t=3)) == count_parameters(
        ...     create_model("r2unet", preset="tiny", t=1))  # t changes compute, not weights
        True
    """
    return UNet(
        in_channels, num_classes, level_widths(base_channels, depth),
        block=partial(RRCNNBlock, t=t, norm=norm, bias=bias),
        up=partial(create_upsample, upsample, norm=norm, bias=bias),
    )


@register_model(
    paper=PAPER,
    year=2018,
    adds="RRCNN blocks combined with Attention U-Net's skip attention gates",
    presets={"reference": {**REFERENCE, "gate": "same_level"}, "tiny": TINY},
    reference_params={"reference": 39_442_925},
)
def r2_attention_unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int = 64,
    depth: int = 5,
    t: int = 2,
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    bias: bool | None = None,
    gate: GateKind = "coarse",
) -> AttentionUNet:
    """R2AttU-Net: R2U-Net with an additive attention gate on every skip connection.

    The blocks are those of `r2unet` (`t` recurrence steps), the gates those of
    `attention_unet`, including its default, the paper's coarse-level gate (see
    `attention_unet` for why); `attention_maps(x)` returns the gates' maps.
    `preset="reference"` gives the widespread PyTorch form with same-level gates
    (39,442,925 parameters).

    Args:
        in_channels, num_classes, base_channels, depth, t, norm, upsample, bias: as `r2unet`.
        gate: coarse or same_level, as `attention_unet`.

    Returns:
        An `AttentionUNet` of RRCNN blocks (logits and `attention_maps` as
        `attention_unet`).

    Raises:
        ModelError: t < 1, or an unknown gate, norm or upsample (via `create_model`).

    Example:
        >>> model = create_model("r2_attention_unet", preset="tiny", gate="same_level")
        >>> type(model.gates[0]).__name__
        'SameLevelGate'
    """
    return AttentionUNet(
        in_channels, num_classes, level_widths(base_channels, depth),
        block=partial(RRCNNBlock, t=t, norm=norm, bias=bias),
        up=partial(create_upsample, upsample, norm=norm, bias=bias),
        gate=gate_factory(gate, norm=norm, bias=bias),
    )
