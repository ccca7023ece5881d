"""Layers chosen by name: one table per option gives the names, the layer and the error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import create_model
from unetzoo.nn import factory, norms
from unetzoo.nn.attention_gate import CoarseGate, SameLevelGate
from unetzoo.nn.factory import (
    NORMS,
    Choice,
    create_norm,
    create_upsample,
    gate_factory,
    se_factory,
)
from unetzoo.nn.squeeze_excitation import SCSE, ChannelSE


class Marker(nn.Identity):
    """A layer that no table holds: where it turns up, the name came from the table."""


@pytest.mark.parametrize("module, table, listed, build", [
    (norms, "NORMS", ("batch", "instance", "group", "none"), lambda name: create_norm(name, 8)),
    (factory, "UPSAMPLERS", ("transpose", "nearest", "bilinear"),
     lambda name: create_upsample(name, 16, 8).up),
    (factory, "GATES", ("same_level", "coarse"), gate_factory),
    (factory, "SQUEEZE_EXCITATIONS", ("se", "scse"), se_factory),
], ids=["norm", "upsample", "gate", "se"])
def test_names_come_from_the_tables(module, table: str, listed: tuple[str, ...], build,
                                    monkeypatch) -> None:
    original: Choice = getattr(module, table)
    assert original.names == tuple(original) == listed  # the names users see, in order
    # a name added to the table is accepted, built by its entry, and listed in the error:
    # no other list of names stands between the table and the user
    monkeypatch.setattr(module, table, Choice(original.option, {
        **original, "extra": lambda *args: Marker()}))
    assert isinstance(build("extra"), Marker)
    with pytest.raises(ModelError, match=f"^unknown {original.option} 'nope'; choose one of "
                                         f"{', '.join(listed)}, extra$"):
        build("nope")


def test_a_model_takes_a_norm_name_through_the_table(monkeypatch) -> None:
    monkeypatch.setattr(norms, "NORMS", Choice("norm", {**NORMS, "extra": lambda c: Marker()}))
    model = create_model("unet", preset="tiny", norm="extra")
    assert any(isinstance(m, Marker) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


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
