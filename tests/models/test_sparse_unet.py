"""Sparse-UNet and its bi-level routing attention: real attention, real sparsity, any size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetzoo.errors import ModelError
from unetzoo.models import create_model
from unetzoo.nn.sparse_attention import BiLevelRoutingAttention, SparseAttentionBlock, region_shape

C, HEADS = 16, 2


def attention(region_size: int | None, topk: int, local_kernel: int = 0) -> nn.Module:
    return BiLevelRoutingAttention(C, HEADS, topk, region_size, local_kernel).double().eval()


def dense_attention(m: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """Full softmax multi-head attention over all H*W tokens with the module's own weights."""
    b, h, w, c = x.shape
    d = c // m.num_heads
    q = m.q(x).reshape(b, h * w, m.num_heads, d).transpose(1, 2)
    k, v = m.kv(x).reshape(b, h * w, 2, m.num_heads, d).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-1, -2) * d**-0.5).softmax(dim=-1)
    return m.proj((weights @ v).transpose(1, 2).reshape(b, h, w, c))


@pytest.mark.parametrize(
    ("size", "region_size"),
    [((8, 12), 4),     # whole regions
     ((9, 7), 4),      # padded regions
     ((5, 3), 8),      # map smaller than a region
     ((37, 45), None),  # odd size, automatic regions (3 x 3, padded)
     ((1, 1), None)],
)
def test_routing_to_all_regions_is_dense_attention(size: tuple[int, int],
                                                   region_size: int | None) -> None:
    m = attention(region_size, topk=10_000)
    x = torch.randn(2, *size, C, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), dense_attention(m, x), rtol=1e-10, atol=1e-10)


def region_tokens(r: int, grid_w: int, side: int) -> tuple[slice, slice]:
    """Row and column slices of region r on a grid `grid_w` regions wide."""
    row, col = divmod(r, grid_w)
    return slice(row * side, (row + 1) * side), slice(col * side, (col + 1) * side)


def test_each_query_sees_only_its_routed_regions() -> None:
    m = attention(region_size=4, topk=2)
    x = torch.randn(1, 12, 12, C, dtype=torch.float64)  # 3 x 3 regions of 4 x 4 tokens
    routes = m.route(x)[0]
    with torch.no_grad():
        out = m(x)
    for query_region in range(9):
        routed = set(routes[query_region].tolist())
        rows, cols = region_tokens(query_region, 3, 4)
        for other in set(range(9)) - {query_region}:
            # A zero-mean change keeps every region mean, hence the routing, but moves the
            # other region's individual keys and values.
            noise = torch.randn(4, 4, C, dtype=torch.float64)
            x2 = x.clone()
            x2[0, *region_tokens(other, 3, 4)] += noise - noise.mean(dim=(0, 1))
            assert torch.equal(m.route(x2)[0], routes)
            with torch.no_grad():
                changed = not torch.allclose(m(x2)[0, rows, cols], out[0, rows, cols],
                                             rtol=0, atol=1e-12)
            assert changed == (other in routed), (query_region, other, routed)


def test_routing_follows_content() -> None:
    """Regions route to the regions whose mean key best matches their mean query."""
    m = attention(region_size=2, topk=1)
    x = torch.randn(1, 6, 6, C, dtype=torch.float64)
    q_r = m.q(x).reshape(1, 3, 2, 3, 2, C).mean(dim=(2, 4)).reshape(9, C)
    k_r = m.kv(x)[..., :C].reshape(1, 3, 2, 3, 2, C).mean(dim=(2, 4)).reshape(9, C)
    assert torch.equal(m.route(x)[0, :, 0], (q_r @ k_r.T).argmax(dim=1))


def test_padded_tokens_do_not_enter_region_means() -> None:
    """With padding, region means are over the real tokens only (7 x 5 map, 4 x 4 regions)."""
    m = attention(region_size=4, topk=1)
    x = torch.randn(1, 7, 5, C, dtype=torch.float64)
    q, k = m.q(x)[0], m.kv(x)[0, ..., :C]
    regions = [(slice(r, r + 4), slice(c, c + 4)) for r in (0, 4) for c in (0, 4)]
    q_r = torch.stack([q[rows, cols].mean(dim=(0, 1)) for rows, cols in regions])
    k_r = torch.stack([k[rows, cols].mean(dim=(0, 1)) for rows, cols in regions])
    assert torch.equal(m.route(x)[0, :, 0], (q_r @ k_r.T).argmax(dim=1))


def test_local_term_is_a_depthwise_conv_on_values() -> None:
    with_local = attention(region_size=4, topk=2, local_kernel=5)
    without = attention(region_size=4, topk=2)
    without.load_state_dict(with_local.state_dict(), strict=False)
    x = torch.randn(1, 9, 11, C, dtype=torch.float64)
    v = with_local.kv(x)[..., C:].permute(0, 3, 1, 2)
    extra = with_local.proj.weight @ with_local.local(v).permute(0, 2, 3, 1).unsqueeze(-1)
    with torch.no_grad():
        torch.testing.assert_close(with_local(x) - without(x), extra.squeeze(-1).detach())


def test_region_shape_grows_with_the_map_and_fits_small_maps() -> None:
    assert region_shape(32, 32) == (3, 3)
    assert region_shape(64, 64) == (4, 4)
    assert region_shape(256, 256) == (6, 6)
    assert region_shape(2, 200) == (2, 3)
    assert region_shape(2, 2, region_size=8) == (2, 2)
    assert region_shape(37, 45, region_size=8) == (8, 8)
    with pytest.raises(ModelError, match="region_size must be >= 1"):
        region_shape(8, 8, region_size=0)


@pytest.mark.parametrize("size", [(37, 45), (3, 2), (1, 9)])
def test_block_keeps_shape_and_passes_gradients(size: tuple[int, int]) -> None:
    block = SparseAttentionBlock(C, HEADS, topk=2)
    x = torch.randn(2, C, *size, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_model_wiring() -> None:
    model = create_model("sparse_unet", base_channels=8, depth=4, attention_from=0, head_dim=8)
    attn = [m for m in model.modules() if isinstance(m, SparseAttentionBlock)]
    assert len(attn) == 4 + 3  # encoder levels (with bottleneck) + decoder levels
    assert [b.attn.num_heads for b in attn] == [1, 2, 4, 8, 4, 2, 1]
    assert all(isinstance(up.up, nn.ConvTranspose2d) and up.up.kernel_size == (2, 2)
               for up in model.ups)
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (1, 1)

    default = create_model("sparse_unet", base_channels=8, depth=4)  # from half resolution
    assert sum(isinstance(m, SparseAttentionBlock) for m in default.modules()) == 3 + 2
    assert not any(isinstance(m, SparseAttentionBlock) for m in default.encoder[0].modules())
    assert not any(isinstance(m, SparseAttentionBlock) for m in default.decoder[-1].modules())

    coarse = create_model("sparse_unet", base_channels=8, depth=4, attention_from=2, blocks=2)
    attn = [m for m in coarse.modules() if isinstance(m, SparseAttentionBlock)]
    assert len(attn) == 2 * (2 + 1)  # levels 2 and 3 in the encoder, level 2 in the decoder


def test_model_any_size_and_no_empty_rows() -> None:
    model = create_model("sparse_unet", preset="tiny", topk=1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 21, 50))
    assert out.shape == (1, 1, 21, 50) and torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs", [{"attention_from": 5}, {"blocks": 0}, {"head_dim": 0}])
def test_bad_options_are_rejected(kwargs: dict[str, int]) -> None:
    from unetzoo.errors import ModelError

    with pytest.raises(ModelError):
        create_model("sparse_unet", preset="tiny", **kwargs)
