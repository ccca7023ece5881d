"""Attention U-Net: the two gate kinds, their counts, odd sizes and the attention maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.nn.attention_gate import CoarseGate, SameLevelGate

ODD = (37, 45)


def test_same_level_gate_parameter_count() -> None:
    assert count_parameters(SameLevelGate(512, 512, 256, bias=True)) == 263_939


def test_coarse_gate_parameter_count() -> None:
    # W_x 2x2 stride 2 (no bias) + W_g 1x1 + psi 1x1 -> 1
    expected = 64 * 32 * 4 + (128 * 32 + 32) + (32 + 1)
    assert count_parameters(CoarseGate(64, 128, 32)) == expected


@pytest.mark.parametrize("kind", ["same_level", "coarse"])
def test_gates_work_at_odd_sizes(kind: str) -> None:
    gate = SameLevelGate(6, 6, 3) if kind == "same_level" else CoarseGate(6, 12, 3)
    x = torch.randn(2, 6, *ODD)
    g_up = torch.randn(2, 6, *ODD)
    g_coarse = torch.randn(2, 12, 19, 23)
    out = gate(x, g_up, g_coarse)
    assert out.shape == x.shape
    alpha = gate.coefficients(x, g_up, g_coarse)
    assert alpha.shape == (2, 1, *ODD)
    torch.testing.assert_close(out, x * alpha)
    # the paper's equation, alpha = sigmoid(psi(relu(W_x x + W_g g))), term by term
    with torch.no_grad():
        if kind == "same_level":
            expected = gate.psi(F.relu(gate.w_x(x) + gate.w_g(g_up)))
        else:
            theta = gate.w_x(x)  # 2x2 stride 2: the skip on the coarse grid
            phi = F.interpolate(gate.w_g(g_coarse), size=theta.shape[-2:], mode="bilinear")
            expected = F.interpolate(torch.sigmoid(gate.psi[0](F.relu(theta + phi))),
                                     size=ODD, mode="bilinear")
        torch.testing.assert_close(alpha, expected)


def test_each_gate_reads_its_own_gating_signal() -> None:
    x, g_up, g_coarse = torch.randn(1, 6, 9, 9), torch.randn(1, 6, 9, 9), torch.randn(1, 12, 5, 5)
    same, coarse = SameLevelGate(6, 6, 3).eval(), CoarseGate(6, 12, 3).eval()
    with torch.no_grad():
        assert torch.equal(same(x, g_up, g_coarse), same(x, g_up, torch.randn_like(g_coarse)))
        assert not torch.equal(same(x, g_up, g_coarse), same(x, torch.randn_like(g_up), g_coarse))
        assert torch.equal(coarse(x, g_up, g_coarse), coarse(x, torch.randn_like(g_up), g_coarse))
        assert not torch.equal(coarse(x, g_up, g_coarse),
                               coarse(x, g_up, torch.randn_like(g_coarse)))


def test_default_gate_is_the_papers_coarse_gate() -> None:
    model = create_model("attention_unet", preset="tiny")
    assert all(isinstance(g, CoarseGate) for g in model.gates)
    reference = create_model("attention_unet", preset="tiny", gate="same_level")
    assert all(isinstance(g, SameLevelGate) for g in reference.gates)


def test_unknown_gate_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="same_level"):
        create_model("attention_unet", preset="tiny", gate="dot")


@pytest.mark.parametrize("name", ["attention_unet", "r2_attention_unet"])
@pytest.mark.parametrize("gate", ["same_level", "coarse"])
def test_attention_maps_shapes_values_and_order(name: str, gate: str) -> None:
    depth = 4
    model = create_model(name, preset="tiny", gate=gate, depth=depth).eval()
    x = torch.randn(2, 3, *ODD)
    with torch.no_grad():
        maps = model.attention_maps(x)
    assert len(maps) == depth - 1 == len(model.gates)
    levels = range(depth - 2, -1, -1)  # coarse to fine
    for m, level in zip(maps, levels, strict=True):
        assert m.shape == (2, 1, math.ceil(ODD[0] / 2**level), math.ceil(ODD[1] / 2**level))
    assert maps[-1].shape[-2:] == ODD


def test_attention_maps_are_the_ones_the_forward_applies() -> None:
    model = create_model("attention_unet", preset="tiny").eval()
    x = torch.randn(1, 3, 32, 32)  # no padding: maps are not cropped
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [g.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
             for g in model.gates]
    with torch.no_grad():
        maps = model.attention_maps(x)
    for h in hooks:
        h.remove()
    for (skip, gated), m in zip(seen, maps, strict=True):
        torch.testing.assert_close(gated, skip * m)


def test_attention_maps_leave_the_model_unchanged() -> None:
    model = create_model("attention_unet", preset="tiny").eval()
    x = torch.randn(1, 3, 33, 35)
    with torch.no_grad():
        before = model(x)
        model.attention_maps(x)
        after = model(x)
    assert torch.equal(before, after)
    assert all(not g.record and g.last_map is None for g in model.gates)
