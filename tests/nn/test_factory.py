"""Layers chosen by name: one table per option gives the names, the layer and the error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import create_model
from unetzoo.nn.attention_gate import CoarseGate, SameLevelGate
from unetzoo.nn.factory import (
    GATES,
    NORMS,
    SQUEEZE_EXCITATIONS,
    UPSAMPLERS,
    create_norm,
    create_upsample,
    gate_factory,
    se_factory,
)
from unetzoo.nn.squeeze_excitation import SCSE, ChannelSE


def test_names_come_from_the_tables() -> None:
    assert NORMS.names == ("batch", "instance", "group", "none")
    assert UPSAMPLERS.names == ("transpose", "nearest", "bilinear")
    assert GATES.names == ("same_level", "coarse")
    assert SQUEEZE_EXCITATIONS.names == ("se", "scse")


def test_each_name_builds_its_layer() -> None:
    group = create_norm("group", 48)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 16  # gcd(32, 48)
    assert isinstance(create_norm("instance", 8), nn.InstanceNorm2d)
    assert isinstance(create_norm("none", 8), nn.Identity)
    up = create_upsample("transpose", 16, 8)
    assert isinstance(up.up, nn.ConvTranspose2d) and up(torch.zeros(1, 16, 5, 7)).shape == (
        1, 8, 10, 14)
    nearest = create_upsample("nearest", 16, 8)
    assert nearest(torch.zeros(1, 16, 5, 7)).shape == (1, 8, 10, 14)
    plain = create_upsample("bilinear", 16, 8, conv=False, align_corners=True)
    assert isinstance(plain.up, nn.Upsample) and plain.up.align_corners
    assert plain(torch.zeros(1, 16, 5, 7)).shape == (1, 16, 10, 14)
    assert isinstance(gate_factory("coarse")(8, 8, 16), CoarseGate)
    assert isinstance(gate_factory("same_level")(8, 8, 16), SameLevelGate)
    assert isinstance(se_factory("se")(32), ChannelSE)
    assert se_factory("scse", combine="max")(32).combine == "max"
    assert isinstance(se_factory("scse")(32), SCSE)


@pytest.mark.parametrize("build, message", [
    (lambda: create_norm("layer", 8), "unknown norm 'layer'; choose one of batch, instance, "
                                      "group, none"),
    (lambda: create_upsample("pixelshuffle", 8, 4), "unknown upsample 'pixelshuffle'"),
    (lambda: gate_factory("dot"), "unknown gate 'dot'; choose one of same_level, coarse"),
    (lambda: se_factory("eca"), "unknown se 'eca'; choose one of se, scse"),
    (lambda: se_factory("scse", combine="mul")(8), "unknown combine 'mul'"),
])
def test_unknown_names_are_model_errors_listing_the_choices(build, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build()


@pytest.mark.parametrize("name, kwargs, message", [
    ("unet", {"norm": "layer"}, "unknown norm 'layer'"),
    ("unetpp", {"upsample": "cubic"}, "unknown upsample 'cubic'"),
    ("se_unet", {"se": "eca"}, "unknown se 'eca'"),
    ("r2_attention_unet", {"gate": "dot"}, "unknown gate 'dot'"),
])
def test_models_pass_their_options_through_the_tables(name: str, kwargs: dict,
                                                       message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model(name, preset="tiny", **kwargs)
