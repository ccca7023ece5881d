"""DPSAU2-Net specifics: RSDPU wiring, split attention (radix), the ten SA blocks, outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.nn.rsu import RSU, ResidualDepthwiseSeparable
from unetzoo.nn.split_attention import (
    PooledBatchNorm2d,
    SplitAttentionBlock,
    SplitAttentionConv,
)


def meta_params(module_factory) -> int:
    with torch.device("meta"):
        return count_parameters(module_factory())


def zero_bn(conv_norm_act: nn.Sequential) -> None:
    nn.init.zeros_(conv_norm_act[1].weight)
    nn.init.zeros_(conv_norm_act[1].bias)


def test_block_parameter_counts() -> None:
    assert meta_params(lambda: RSU(3, 32, 64, height=7, depthwise_unit=True)) == 213_632
    assert meta_params(lambda: SplitAttentionConv(64, 64, 3, radix=2, bias=False)) == 43_488


def test_depthwise_unit_is_pw_of_dw_plus_identity() -> None:
    unit = ResidualDepthwiseSeparable(6).eval()
    assert unit.depthwise[0].groups == 6 and unit.depthwise[0].kernel_size == (7, 7)
    zero_bn(unit.depthwise)  # dw(h) = ReLU(0) = 0, so the unit is pw(h)
    h = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        assert torch.equal(unit(h), unit.pointwise(h))


@pytest.mark.parametrize("dilated", [False, True])
def test_rsdpu_residual_is_the_refined_stem(dilated: bool) -> None:
    block = RSU(3, 4, 6, height=4, dilated=dilated, depthwise_unit=True).eval()
    assert isinstance(block.refine, ResidualDepthwiseSeparable)
    zero_bn(block.decoder[0])  # the inner U now outputs 0: the block returns its residual
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        hx_in = block.stem(x)
        assert torch.equal(block(x), block.refine(hx_in))
        assert not torch.allclose(block(x), hx_in)


def manual_split_attention(module: SplitAttentionConv, x: torch.Tensor) -> torch.Tensor:
    splits = module.conv(x).chunk(module.radix, dim=1)
    logits = module.attention(sum(splits).mean(dim=(2, 3), keepdim=True))
    if module.radix == 1:
        return torch.sigmoid(logits) * splits[0]
    weights = logits.unflatten(1, (module.radix, -1)).softmax(dim=1)
    return sum(weights[:, r] * s for r, s in enumerate(splits))


@pytest.mark.parametrize("radix", [1, 2, 4])
def test_split_attention_softmax_over_splits_and_sigmoid_for_radix_one(radix: int) -> None:
    module = SplitAttentionConv(8, 12, radix=radix).eval()
    x = torch.randn(2, 8, 7, 5)
    with torch.no_grad():
        out = module(x)
        torch.testing.assert_close(out, manual_split_attention(module, x))
    assert out.shape == (2, 12, 7, 5)


def test_split_attention_with_cardinal_groups() -> None:
    module = SplitAttentionConv(16, 16, radix=2, groups=4)
    assert module.conv[0].groups == 8
    assert module(torch.randn(2, 16, 6, 6)).shape == (2, 16, 6, 6)
    with pytest.raises(ModelError, match="divisible"):
        SplitAttentionConv(16, 10, groups=4)
    with pytest.raises(ModelError, match="divisible"):
        SplitAttentionConv(8, 8, radix=3)


def test_split_attention_block_is_residual() -> None:
    block = SplitAttentionBlock(16, radix=2, expansion=1).eval()
    zero_bn(block.body[2])  # the branch outputs 0: ReLU(x + 0)
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
    assert SplitAttentionBlock(64).body[0][0].out_channels == 16  # ResNeSt width C / 4


def test_pooled_batch_norm_accepts_a_single_training_sample() -> None:
    norm = PooledBatchNorm2d(4).train()
    norm(torch.randn(1, 4, 1, 1))
    assert torch.equal(norm.running_mean, torch.zeros(4)) and int(norm.num_batches_tracked) == 0
    reference = nn.BatchNorm2d(4).train()
    x = torch.randn(3, 4, 1, 1)
    torch.testing.assert_close(norm(x), reference(x))


def test_ten_sa_blocks_where_the_reference_places_them() -> None:
    with torch.device("meta"):
        model = create_model("dpsau2net", preset="reference")
    enc = [b.body[0][0].in_channels for b in model.encoder_attention]
    dec = [b.body[0][0].in_channels for b in reversed(model.decoder_attention)]
    assert enc == [64, 128, 256, 512, 512]  # pooled features entering En2..En6
    assert dec == [512, 512, 256, 128, 64]  # up-sampled features entering De5..De1
    blocks = [*model.encoder_attention, *model.decoder_attention]
    assert all(b.body[1].radix == 2 and b.body[0][0].out_channels == b.body[0][0].in_channels
               for b in blocks)
    assert all(isinstance(s.refine, ResidualDepthwiseSeparable)
               for s in [*model.encoder, *model.decoder])


@pytest.mark.parametrize("radix", [1, 4])
def test_radix_option(radix: int) -> None:
    model = create_model("dpsau2net", preset="tiny", radix=radix).train()
    assert {b.body[1].radix for b in model.encoder_attention} == {radix}
    assert model(torch.randn(2, 3, 9, 11)).shape == (2, 1, 9, 11)


def test_forward_returns_fused_logits_and_optional_deep_supervision() -> None:
    model = create_model("dpsau2net", preset="tiny").train()
    assert model.output_weights is None
    x = torch.randn(1, 3, 40, 52)  # a single sample: 1 x C x 1 x 1 pooled attention features
    assert model(x).shape == (1, 1, 40, 52)
    model = create_model("dpsau2net", preset="tiny", deep_supervision=True).train()
    out = model(torch.randn(2, 3, 37, 45))
    assert len(out) == 7 and model.output_weights == (1.0,) * 7
    torch.testing.assert_close(out[0], model.fuse(torch.cat(out[1:], dim=1)))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 37, 45)).shape == (1, 1, 37, 45)
