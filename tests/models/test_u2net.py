"""U2-Net / U2-Netp specifics: RSU blocks, the seven deep-supervision outputs, any input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import count_parameters, create_model
from unetzoo.models.u2net import U2Net
from unetzoo.nn.rsu import RSU


def meta_params(module_factory) -> int:
    with torch.device("meta"):
        return count_parameters(module_factory())


def stems(model: U2Net) -> list[tuple[int, int]]:
    """(in, out) channels of every stage: En1..En_n, then De1..De_{n-1}."""
    return [(s.stem[0].in_channels, s.stem[0].out_channels)
            for s in [*model.encoder, *model.decoder]]


def dilations(convs: nn.ModuleList) -> list[int]:
    return [block[0].dilation[0] for block in convs]


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (lambda: RSU(3, 32, 64, height=7), 206_016),
        (lambda: RSU(512, 256, 512, height=4, dilated=True), 10_034_688),
    ],
    ids=["RSU7(3,32,64)", "RSU4F(512,256,512)"],
)
def test_rsu_parameter_counts(factory, expected: int) -> None:
    assert meta_params(factory) == expected


def test_rsu_layout_pooled_and_dilated() -> None:
    rsu7 = RSU(3, 8, 16, height=7)
    assert len(rsu7.encoder) == 7 and len(rsu7.decoder) == 6
    assert dilations(rsu7.encoder) == [1, 1, 1, 1, 1, 1, 2]
    assert rsu7.pool.ceil_mode
    rsu4f = RSU(3, 8, 16, height=4, dilated=True)
    assert dilations(rsu4f.encoder) == [1, 2, 4, 8]
    assert dilations(rsu4f.decoder)[::-1] == [4, 2, 1]  # applied deep to shallow
    assert isinstance(rsu4f.pool, nn.Identity)


@pytest.mark.parametrize("dilated", [False, True])
def test_rsu_output_is_inner_u_plus_stem(dilated: bool) -> None:
    block = RSU(3, 4, 6, height=5, dilated=dilated).eval()
    last_bn = block.decoder[0][1]  # the shallowest decoder conv (2 mid -> out)
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)  # inner U now outputs ReLU(0) = 0
    x = torch.randn(2, 3, 13, 10)
    with torch.no_grad():
        assert torch.equal(block(x), block.stem(x))


@pytest.mark.parametrize("size", [(37, 45), (9, 11), (1, 1), (2, 64)])
def test_rsu_keeps_any_size(size: tuple[int, int]) -> None:
    block = RSU(3, 4, 6, height=7).eval()
    with torch.no_grad():
        assert block(torch.randn(1, 3, *size)).shape == (1, 6, *size)


def test_rsu_needs_height_two() -> None:
    with pytest.raises(ModelError, match="height"):
        RSU(3, 4, 6, height=1)


@pytest.mark.parametrize("name", ["u2net", "u2netp"])
def test_training_returns_seven_logit_maps_fused_first(name: str) -> None:
    model = create_model(name, num_classes=2, preset="tiny").train()
    assert model.output_weights == (1.0,) * 7
    out = model(torch.randn(2, 3, 37, 45))
    assert isinstance(out, list) and len(out) == 7
    assert all(o.shape == (2, 2, 37, 45) for o in out)
    fused, sides = out[0], out[1:]
    torch.testing.assert_close(fused, model.fuse(torch.cat(sides, dim=1)))
    assert fused.min() < 0 or fused.max() > 1, "outputs are logits, not probabilities"
    model.eval()
    with torch.no_grad():
        main = model(torch.randn(1, 3, 37, 45))
    assert isinstance(main, torch.Tensor) and main.shape == (1, 2, 37, 45)


def test_without_deep_supervision_training_returns_fused_only() -> None:
    model = create_model("u2net", preset="tiny", deep_supervision=False).train()
    assert model.output_weights is None
    assert model(torch.randn(2, 3, 16, 20)).shape == (2, 1, 16, 20)


@pytest.mark.parametrize("size", [(9, 11), (1, 1), (37, 45), (3, 130)])
def test_tiny_and_odd_sizes_without_padding(size: tuple[int, int]) -> None:
    model = create_model("u2netp", preset="tiny")
    assert model.size_divisor == 1
    outputs = model.train()(torch.randn(2, 3, *size))
    assert [o.shape for o in outputs] == [(2, 1, *size)] * 7
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_reference_stage_tables() -> None:
    with torch.device("meta"):
        full = create_model("u2net", preset="reference")
        small = create_model("u2netp", preset="reference")
    # En1..En6, then De1..De5
    assert stems(full) == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 512), (512, 512),
                           (128, 64), (256, 64), (512, 128), (1024, 256), (1024, 512)]
    assert stems(small) == [(3, 64)] + [(64, 64)] * 5 + [(128, 64)] * 5
    assert {s.encoder[0][0].out_channels for s in [*small.encoder, *small.decoder]} == {16}
    heights = [len(s.encoder) for s in full.encoder]
    assert heights == [7, 6, 5, 4, 4, 4]
    assert [dilations(s.encoder)[-1] for s in full.encoder] == [2, 2, 2, 2, 8, 8]
    assert [h.in_channels for h in full.side_heads] == [64, 64, 128, 256, 512, 512]
    assert full.fuse.in_channels == 6 and full.fuse.kernel_size == (1, 1)


def test_shallower_variants_and_invalid_tables() -> None:
    model = U2Net(1, 1, [(4, 8)] * 3, [(4, 8)] * 2, heights=(3,)).train()
    assert len(model(torch.randn(2, 1, 10, 12))) == 4  # fused + 3 sides
    with pytest.raises(ModelError, match="one decoder stage fewer"):
        create_model("u2net", decoder_widths=[(4, 8)] * 4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_graph_is_valid_for_other_sizes() -> None:
    """At 16 x 16 the inner pools reach 1 x 1 (ceil mode 1 -> 1); resizing is still traced."""
    model = create_model("u2netp", preset="tiny").eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 16, 16), check_trace=False)
        x = torch.randn(1, 3, 37, 45)
        torch.testing.assert_close(traced(x), model(x))
