"""SE U-Net: where SE sits, SE / scSE counts and what each recalibration responds to."""

from __future__ import annotations

import pytest
import torch

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.nn.squeeze_excitation import SCSE, ChannelSE, SpatialSE

ODD = (37, 45)


def channel_se_params(c: int, hidden: int) -> int:
    return c * hidden + hidden + hidden * c + c


def test_channel_se_counts_and_hidden_floor() -> None:
    assert count_parameters(ChannelSE(64, reduction=16)) == channel_se_params(64, 4)
    assert count_parameters(ChannelSE(256, reduction=8)) == channel_se_params(256, 32)
    assert count_parameters(ChannelSE(16, reduction=16)) == channel_se_params(16, 4)  # floor
    assert count_parameters(SCSE(64)) == channel_se_params(64, 4) + 64 + 1


def test_reference_is_unet_reference_plus_se_in_every_block() -> None:
    widths = [64, 128, 256, 512, 1024]
    blocks = widths + widths[-2::-1]  # encoder + bottleneck, then decoder
    se = sum(channel_se_params(c, c // 16) for c in blocks)
    with torch.device("meta"):
        unet = create_model("unet", preset="reference")
        model = create_model("se_unet", preset="reference")
        scse = create_model("se_unet", preset="reference_scse")
    assert count_parameters(model) == count_parameters(unet) + se == 34_748_281
    assert count_parameters(scse) == count_parameters(model) + sum(c + 1 for c in blocks)
    assert sum(isinstance(m, ChannelSE) for m in model.modules()) == 2 * 5 - 1


def test_default_is_scse_in_encoder_and_decoder() -> None:
    model = create_model("se_unet", preset="tiny")
    assert all(isinstance(b.se, SCSE) for b in [*model.encoder, *model.decoder])


def test_channel_se_scales_each_channel_uniformly_over_space() -> None:
    x = torch.rand(2, 8, 10, 12) + 0.5
    ratio = ChannelSE(8)(x) / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio))
    assert ratio.flatten(2).std(dim=1).max() > 0  # different channels get different weights


def test_spatial_se_responds_to_spatial_content() -> None:
    sse = SpatialSE(4)
    x = torch.full((1, 4, 9, 9), 0.5)
    x[..., 3:6, 3:6] = 3.0
    ratio = sse(x) / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))  # one weight per pixel
    assert not torch.isclose(ratio[0, 0, 4, 4], ratio[0, 0, 0, 0])  # blob differs from background
    assert torch.allclose(ratio[0, 0, :2], ratio[0, 0, :1, :1].expand(2, 9))  # flat where x is


@pytest.mark.parametrize("combine", ["add", "max"])
def test_scse_combines_channel_and_spatial_recalibration(combine: str) -> None:
    scse = SCSE(8, combine=combine)
    x = torch.randn(2, 8, 6, 7)
    c, s = scse.cse(x), scse.sse(x)
    expected = c + s if combine == "add" else torch.maximum(c, s)
    torch.testing.assert_close(scse(x), expected)


def test_bad_options_are_model_errors() -> None:
    with pytest.raises(ModelError, match="scse"):
        create_model("se_unet", preset="tiny", se="eca")
    with pytest.raises(ModelError, match="combine"):
        create_model("se_unet", preset="tiny", combine="mul")
    with pytest.raises(ModelError, match="reduction"):
        create_model("se_unet", preset="tiny", reduction=0)
