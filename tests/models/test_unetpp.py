"""UNet++ specifics: the node grid, deep-supervision outputs and weights, inference pruning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.models.unetpp import UNetPlusPlus

WIDTHS = [4, 8, 16, 32]  # n = 3: nodes X^{i,j} with i + j <= 3


def small(**kwargs) -> UNetPlusPlus:
    kwargs.setdefault("widths", WIDTHS)
    return create_model("unetpp", in_channels=3, num_classes=2, **kwargs)


def all_heads(model: UNetPlusPlus, x: torch.Tensor) -> list[torch.Tensor]:
    """Training-mode outputs (every head) computed with the eval-mode norm statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    with torch.no_grad():
        out = model(x)
    model.eval()
    return out


def trained_stats(model: UNetPlusPlus) -> UNetPlusPlus:
    """Give the batch norms non-trivial running statistics."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 40) * 3 + 1)
    return model.eval()


def test_grid_has_every_node_and_its_inputs() -> None:
    bilinear = small(upsample="bilinear")
    transpose = small(upsample="transpose")
    n = len(WIDTHS) - 1
    for model, up_channels in ((bilinear, WIDTHS[1:]), (transpose, WIDTHS[:-1])):
        assert [len(row) for row in model.nodes] == [n + 1 - i for i in range(n + 1)]
        for i, row in enumerate(model.nodes):
            for j, node in enumerate(row):
                first_conv = node[0][0]
                expected_in = ((3 if i == 0 else WIDTHS[i - 1]) if j == 0
                               else j * WIDTHS[i] + up_channels[i])
                assert (first_conv.in_channels, first_conv.out_channels) == (expected_in,
                                                                             WIDTHS[i])


def test_transpose_option_uses_a_2x2_transposed_conv_per_node() -> None:
    model = small(upsample="transpose")
    for i, row in enumerate(model.ups):
        for up in row:
            conv = up.up
            assert isinstance(conv, nn.ConvTranspose2d)
            assert (conv.in_channels, conv.out_channels) == (WIDTHS[i + 1], WIDTHS[i])
            assert conv.kernel_size == conv.stride == (2, 2)
    bilinear = small(upsample="bilinear")
    assert all(isinstance(up.up, nn.Upsample) and up.up.align_corners
               for row in bilinear.ups for up in row)
    assert sum(p.numel() for p in bilinear.ups.parameters()) == 0
    x = torch.randn(1, 3, 29, 35)
    assert model.eval()(x).shape == (1, 2, 29, 35)


def test_reference_head_counts() -> None:
    with torch.device("meta"):
        ref = create_model("unetpp", preset="reference")
        ds = create_model("unetpp", preset="reference_ds")
    assert len(ref.heads) == 1 and len(ds.heads) == 4
    assert count_parameters(ds) - count_parameters(ref) == 3 * (32 + 1)


def test_deep_supervision_outputs_main_first() -> None:
    model = trained_stats(small(deep_supervision=True, upsample="bilinear"))
    top_row: dict[int, torch.Tensor] = {}
    for j, node in enumerate(model.nodes[0]):
        node.register_forward_hook(lambda _m, _i, out, j=j: top_row.__setitem__(j, out))
    x = torch.randn(1, 3, 32, 40)
    outputs = all_heads(model, x)
    assert len(outputs) == 3 and all(o.shape == (1, 2, 32, 40) for o in outputs)
    with torch.no_grad():
        heads = [model.heads[j - 1](top_row[j]) for j in (1, 2, 3)]  # heads on X^{0,1..3}
        main = model(x)
    assert [torch.equal(o, h) for o, h in zip(outputs, [heads[2], heads[0], heads[1]],
                                              strict=True)] == [True] * 3
    assert isinstance(main, torch.Tensor) and torch.equal(main, outputs[0])


def test_output_weights_default_equal_and_configurable() -> None:
    assert small().output_weights is None
    assert small(deep_supervision=True).output_weights == pytest.approx((1 / 3,) * 3)
    with torch.device("meta"):
        assert create_model("unetpp", preset="reference_ds").output_weights == (0.25,) * 4
    weights = small(deep_supervision=True, output_weights=[0.5, 0.25, 0.25]).output_weights
    assert weights == (0.5, 0.25, 0.25)
    with pytest.raises(ModelError, match="3 values"):
        small(deep_supervision=True, output_weights=[1.0, 1.0])
    with pytest.raises(ModelError, match="deep_supervision"):
        small(output_weights=[1.0])


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
def test_pruned_output_equals_the_head_of_the_full_model(upsample: str) -> None:
    model = trained_stats(small(deep_supervision=True, upsample=upsample))
    x = torch.randn(2, 3, 32, 40)
    outputs = all_heads(model, x)
    by_depth = {1: outputs[1], 2: outputs[2], 3: outputs[0]}
    for depth, expected in by_depth.items():
        model.prune(depth)
        with torch.no_grad():
            assert torch.equal(model(x), expected), depth
    model.prune_depth = None
    with torch.no_grad():
        assert torch.equal(model(x), outputs[0])


@pytest.mark.parametrize("depth", [1, 2])
def test_pruned_forward_skips_the_deeper_nodes(depth: int) -> None:
    model = small(deep_supervision=True, prune_depth=depth).eval()
    ran: set[tuple[str, int, int]] = set()
    groups = {"node": model.nodes, "up": model.ups}
    for kind, grid in groups.items():
        for i, row in enumerate(grid):
            for j, module in enumerate(row):
                column = j if kind == "node" else j + 1  # ups[i][j - 1] feeds X^{i,j}
                module.register_forward_hook(
                    lambda *_, key=(kind, i, column): ran.add(key))
    for k, head in enumerate(model.heads):
        head.register_forward_hook(lambda *_, key=("head", 0, k + 1): ran.add(key))
    with torch.no_grad():
        model(torch.randn(1, 3, 24, 24))
    nodes = {(i, j) for i in range(depth + 1) for j in range(depth + 1 - i)}
    expected = ({("node", i, j) for i, j in nodes}
                | {("up", i, j) for i, j in nodes if j > 0} | {("head", 0, depth)})
    assert ran == expected


def test_pruning_needs_deep_supervision() -> None:
    model = small()
    with pytest.raises(ModelError, match="deep_supervision"):
        model.prune(2)
    with pytest.raises(ModelError, match="deep_supervision"):
        model.prune_depth = 1
    with pytest.raises(ModelError, match="deep_supervision"):
        small(prune_depth=1)
    model = small(deep_supervision=True)
    for bad in (0, 4):
        with pytest.raises(ModelError, match=r"1\.\.3"):
            model.prune(bad)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_pruned_model_takes_odd_sizes_and_pads_only_what_it_needs(depth: int) -> None:
    model = small(deep_supervision=True).prune(depth).eval()
    assert model.size_divisor == 2**depth
    with torch.no_grad():
        assert model(torch.randn(1, 3, 37, 45)).shape == (1, 2, 37, 45)
        assert model(torch.randn(1, 3, 2**depth + 1, 3)).shape == (1, 2, 2**depth + 1, 3)
    model.train()
    assert model.size_divisor == 8  # training always runs (and pads for) the full network
    outputs = model(torch.randn(1, 3, 37, 45))
    assert len(outputs) == 3 and all(o.shape == (1, 2, 37, 45) for o in outputs)


def test_depth_from_widths_or_base_and_depth() -> None:
    assert small(widths=[4, 8]).full_depth == 1
    assert create_model("unetpp", base_channels=4, depth=4).full_depth == 3
    assert [row[0][1][0].out_channels for row in small(widths=[3, 5, 7]).nodes] == [3, 5, 7]
    with pytest.raises(ModelError, match="widths must be 2 or more"):
        small(widths=[8])


def test_prune_depth_is_rebuilt_from_the_spec() -> None:
    model = small(deep_supervision=True, prune_depth=2)
    rebuilt = create_model(**{k: v for k, v in model.unetzoo_spec.items() if k != "kwargs"},
                           **model.unetzoo_spec["kwargs"])
    assert rebuilt.prune_depth == 2
