"""SE U-Net: U-Net whose every block ends with squeeze-and-excitation recalibration.

    every block:  [3x3 conv -> norm -> ReLU] x 2 -> SE (channel SE or scSE)
    wiring:       the U-Net's (encoder, bottleneck and decoder blocks all carry SE)

No canonical SE U-Net exists; this is this project's definition, built from Hu et al.'s
channel SE and Roy et al.'s concurrent spatial and channel SE (scSE).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from torch import nn

from ..nn.blocks import DoubleConv
from ..nn.factory import NormKind, SEKind, UpKind, create_upsample, se_factory
from .registry import register_model
from .unet import UNet, level_widths


class SEDoubleConv(nn.Sequential):
    """The U-Net block followed by a recalibration of its output: `conv` then `se`."""

    def __init__(self, in_channels: int, out_channels: int,
                 recalibration: Callable[[int], nn.Module], norm: NormKind = "batch",
                 bias: bool | None = None) -> None:
        super().__init__(OrderedDict(
            conv=DoubleConv(in_channels, out_channels, norm=norm, bias=bias),
            se=recalibration(out_channels),
        ))


# This project's reference: the U-Net reference form plus channel SE (r = 16) in every block.
REFERENCE = {"base_channels": 64, "depth": 5, "norm": "batch", "upsample": "nearest",
             "bias": True, "se": "se", "reduction": 16}


@register_model(
    paper="Hu, Shen, Sun. Squeeze-and-Excitation Networks. CVPR 2018 (arXiv:1709.01507); "
          "Roy, Navab, Wachinger. Concurrent Spatial and Channel Squeeze & Excitation in Fully "
          "Convolutional Networks. MICCAI 2018 (arXiv:1803.02579)",
    year=2018,
    adds="squeeze-and-excitation (channel SE or scSE) recalibrating every block's output",
    presets={
        "reference": REFERENCE,
        "reference_scse": {**REFERENCE, "se": "scse", "combine": "add"},
        "tiny": {"base_channels": 8, "depth": 3},
    },
    reference_params={"reference": 34_748_281, "reference_scse": 34_751_234},
)
def se_unet(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int = 64,
    depth: int = 5,
    se: SEKind = "scse",
    reduction: int = 16,
    combine: str = "add",
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    bias: bool | None = None,
) -> UNet:
    """SE U-Net: U-Net whose every block ends with squeeze-and-excitation (scSE or SE).

    This project's own definition (no canonical SE U-Net exists): each of the 2 x depth - 1
    blocks (encoder levels, bottleneck and decoder levels) is [3x3 conv -> norm -> ReLU] x 2
    followed by a recalibration of its output, before pooling (encoder) or up-sampling
    (decoder), as Roy et al. place scSE after every encoder and decoder block.
    `se="se"`: channel SE (Hu et al.), GAP -> FC(C -> max(C // reduction, 4)) -> ReLU -> FC ->
    sigmoid -> scale. `se="scse"`: channel SE and spatial SE (1x1 conv C -> 1 -> sigmoid ->
    scale) computed on the same input and combined by `combine`, "add" (Roy et al.) or "max"
    (element-wise maximum).
    The default is scSE with addition: Roy et al. found spatial excitation matters more than
    channel excitation for segmentation, a pixel-wise task, and the sum keeps a block's output
    scale at initialisation (both gates start near 0.5), whereas channel SE alone halves every
    block's output, which trained visibly slower in our small checks. Other defaults follow
    `unet`. `preset="reference"` (this project's, not a published count): the U-Net reference
    form (biased convs + batch norm, nearest x2 + conv up) with channel SE, r = 16, in every
    block: 34,748,281 parameters; `preset="reference_scse"` uses scSE instead: 34,751,234.

    Args:
        in_channels, num_classes, base_channels, depth, norm, upsample, bias: as `unet`.
        se: se or scse (`unetzoo.nn.factory.SQUEEZE_EXCITATIONS`).
        reduction: the excitation MLP has C // reduction hidden units (at least 4).
        combine: add or max, how scSE joins its channel and spatial branches.

    Returns:
        A `UNet` whose blocks end with SE (logits as `unet`).

    Raises:
        ModelError: an unknown se, combine, norm or upsample, or reduction < 1.

    Example:
        >>> model = create_model("se_unet", preset="tiny", se="se", reduction=4)
        >>> model.encoder[0].se.excite[1].out_channels  # 8 channels // 4, at least 4
        4
    """
    return UNet(
        in_channels, num_classes, level_widths(base_channels, depth),
        block=partial(SEDoubleConv, recalibration=se_factory(se, reduction, combine),
                      norm=norm, bias=bias),
        up=partial(create_upsample, upsample, norm=norm, bias=bias),
    )
