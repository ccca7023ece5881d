"""Layers chosen by name: the one place each name maps to a layer (timm's create_norm style).

Every string option that selects a layer (`norm`, `upsample`, `gate`, `se`) is a key of
one table below; its accepted names, the lookup and the error for an unknown name all come
from that table. Models pass the user's string here and get a module (or a factory) back.

    create_norm("group", 64)                      # GroupNorm(32, 64), from norms.py
    create_upsample("nearest", 128, 64)           # x2 nearest + 3x3 conv -> norm -> ReLU
    gate_factory("coarse")(64, 64, 128)           # Oktay's coarse attention gate
    se_factory("scse", reduction=16)(64)          # concurrent spatial and channel SE
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .attention_gate import AttentionGate, CoarseGate, SameLevelGate
from .blocks import ConvNormAct, UpSample
from .norms import NORMS, Choice, NormKind, create_norm
from .squeeze_excitation import SCSE, ChannelSE

# Type names of the string options; the accepted values are the keys of the tables below.
UpKind = str
GateKind = str
SEKind = str


def _interpolation(mode: str) -> Callable[..., nn.Module]:
    def build(in_channels: int, out_channels: int, norm: NormKind, bias: bool | None,
              conv: bool, align_corners: bool) -> nn.Module:
        interp = nn.Upsample(scale_factor=2, mode=mode,
                             align_corners=align_corners if mode == "bilinear" else None)
        if not conv:
            return interp
        return nn.Sequential(interp, ConvNormAct(in_channels, out_channels, norm=norm,
                                                 bias=bias))
    return build


UPSAMPLERS: Choice[Callable[..., nn.Module]] = Choice("upsample", {
    "transpose": lambda in_channels, out_channels, *_: nn.ConvTranspose2d(
        in_channels, out_channels, 2, stride=2),
    "nearest": _interpolation("nearest"),
    "bilinear": _interpolation("bilinear"),
})


def create_upsample(kind: UpKind, in_channels: int, out_channels: int, norm: NormKind = "batch",
                    bias: bool | None = None, conv: bool = True,
                    align_corners: bool = False) -> UpSample:
    """x2 up-sampling from `in_channels` to `out_channels` (a `B x C x H x W` map to 2H x 2W).

    Args:
        kind: transpose (the U-Net paper's 2x2 "up-convolution", stride 2), nearest or
            bilinear (interpolation, then 3x3 conv -> norm -> ReLU to `out_channels`).
        norm, bias: of that conv (ignored by transpose).
        conv: False leaves out the conv after interpolation, keeping `in_channels` (UNet++'s
            common PyTorch form).
        align_corners: of bilinear interpolation.

    Raises:
        ModelError: `kind` is not one of `UPSAMPLERS.names`.
    """
    return UpSample(UPSAMPLERS[kind](in_channels, out_channels, norm, bias, conv, align_corners))


GateFactory = Callable[[int, int, int], AttentionGate]

GATES: Choice[Callable[[NormKind, bool | None], GateFactory]] = Choice("gate", {
    "same_level": lambda norm, bias: (
        lambda skip, up, coarse: SameLevelGate(skip, up, max(skip // 2, 1), norm, bias)),
    "coarse": lambda norm, bias: (
        lambda skip, up, coarse: CoarseGate(skip, coarse, max(skip // 2, 1))),
})


def gate_factory(kind: GateKind = "coarse", norm: NormKind = "batch",
                 bias: bool | None = None) -> GateFactory:
    """A `UNet` gate factory `(skip, up, coarse channels) -> gate` with F_int = skip / 2.

    Args:
        kind: coarse (Oktay et al.'s gate fed by the coarser decoder feature) or same_level
            (the widespread PyTorch gate fed by the up-sampled feature).
        norm, bias: of the same-level gate's 1x1 convs (the coarse gate has no norm).

    Raises:
        ModelError: `kind` is not one of `GATES.names`.
    """
    return GATES[kind](norm, bias)


SEFactory = Callable[[int], nn.Module]

SQUEEZE_EXCITATIONS: Choice[Callable[[int, str], SEFactory]] = Choice("se", {
    "se": lambda reduction, combine: lambda channels: ChannelSE(channels, reduction),
    "scse": lambda reduction, combine: lambda channels: SCSE(channels, reduction, combine),
})


def se_factory(kind: SEKind = "se", reduction: int = 16, combine: str = "add") -> SEFactory:
    """A factory `channels -> recalibration module`: channel SE (Hu et al.) or scSE (Roy et al.).

    Args:
        kind: se or scse.
        reduction: hidden units of the excitation MLP are channels // reduction (at least 4).
        combine: how scSE joins its channel and spatial branches, add or max.

    Raises:
        ModelError: `kind` is not one of `SQUEEZE_EXCITATIONS.names`.
    """
    return SQUEEZE_EXCITATIONS[kind](reduction, combine)


__all__ = ["GATES", "NORMS", "SQUEEZE_EXCITATIONS", "UPSAMPLERS", "Choice", "NormKind",
           "create_norm", "create_upsample", "gate_factory", "se_factory"]
