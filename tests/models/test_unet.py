"""U-Net specifics beyond the shared model contract: explicit widths per level."""

from __future__ import annotations

import pytest
import torch

from unetzoo.errors import ModelError
from unetzoo.models import create_model


def out_channels(stage: torch.nn.Module) -> int:
    return [m for m in stage.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels


def test_explicit_widths_set_every_level() -> None:
    model = create_model("unet", 3, 1, widths=[8, 8, 16, 24], norm="instance")
    assert [out_channels(stage) for stage in model.encoder] == [8, 8, 16, 24]
    assert [out_channels(stage) for stage in model.decoder] == [16, 8, 8]
    assert model.head.in_channels == 8
    assert model.size_divisor == 8
    assert model(torch.randn(1, 3, 21, 30)).shape == (1, 1, 21, 30)


@pytest.mark.parametrize("widths", [[8], [8, 0], [8, 2.5], [8, True], 32, "32,64"])
def test_widths_need_two_levels_of_whole_channel_counts(widths: list) -> None:
    with pytest.raises(ModelError, match="widths must be"):
        create_model("unet", 3, 1, widths=widths)


@pytest.mark.parametrize("model", ["unet", "unetpp"])
@pytest.mark.parametrize("kwargs, ignored", [
    ({"base_channels": 16}, "base_channels=16 would be ignored"),
    ({"depth": 3}, "depth=3 would be ignored"),
    ({"preset": "tiny"}, "base_channels=8 and depth=3 would be ignored"),
])
def test_widths_with_base_channels_depth_or_a_preset_is_refused(model: str, kwargs: dict,
                                                                ignored: str) -> None:
    with pytest.raises(ModelError, match=rf"^model '{model}': widths=\[8, 16\] sets every "
                                         rf"level, so {ignored}"):
        create_model(model, 3, 1, widths=[8, 16], **kwargs)


def test_base_channels_and_depth_default_to_the_paper_without_widths() -> None:
    assert [out_channels(stage) for stage in create_model("unet").encoder] == [
        64, 128, 256, 512, 1024]
    assert [out_channels(s) for s in create_model("unet", depth=2).encoder] == [64, 128]
    assert [out_channels(s) for s in create_model("unet", base_channels=4).encoder] == [
        4, 8, 16, 32, 64]
    assert create_model("unetpp").full_depth == 4
