"""R2U-Net / R2AttU-Net: the recurrent residual block, its recurrence steps, the shared gates."""

from __future__ import annotations

import pytest
import torch

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.nn.attention_gate import AttentionGate
from unetzoo.nn.recurrent import RecurrentConv, RRCNNBlock


def test_rrcnn_block_parameter_count() -> None:
    assert count_parameters(RRCNNBlock(3, 64, bias=True)) == 74_368


@pytest.mark.parametrize("t", [1, 2, 3])
def test_recurrent_conv_applies_its_shared_unit_t_plus_one_times(t: int) -> None:
    layer = RecurrentConv(4, t=t)
    calls = []
    layer.f.register_forward_hook(lambda *_: calls.append(1))
    layer(torch.randn(1, 4, 8, 8))
    assert len(calls) == t + 1


def test_rrcnn_block_is_residual_over_its_projection() -> None:
    block = RRCNNBlock(3, 5).eval()
    x = torch.randn(1, 3, 7, 9)
    with torch.no_grad():
        projected = block.project(x)
        torch.testing.assert_close(block(x), projected + block.rcnn(projected))


@pytest.mark.parametrize("name", ["r2unet", "r2_attention_unet"])
def test_t_changes_the_output_not_the_parameter_count(name: str) -> None:
    models = {t: create_model(name, preset="tiny", t=t).eval() for t in (1, 2, 3)}
    counts = {t: count_parameters(m) for t, m in models.items()}
    assert len(set(counts.values())) == 1
    state = models[2].state_dict()
    for m in models.values():
        m.load_state_dict(state)
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        outs = {t: m(x) for t, m in models.items()}
    assert not torch.allclose(outs[1], outs[2])
    assert not torch.allclose(outs[2], outs[3])


def test_t_below_one_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="t must be >= 1"):
        create_model("r2unet", preset="tiny", t=0)


def test_r2_attention_unet_is_r2unet_plus_the_attention_gates() -> None:
    with torch.device("meta"):
        plain = create_model("r2unet", preset="reference")
        gated = create_model("r2_attention_unet", preset="reference")
    gates = sum(count_parameters(g) for g in gated.gates)
    assert count_parameters(gated) == count_parameters(plain) + gates
    assert all(isinstance(g, AttentionGate) for g in gated.gates)
    assert count_parameters(gated) - count_parameters(plain) == 39_442_925 - 39_091_393
