"""Bi-level routing attention (BiFormer, Zhu et al., CVPR 2023, arXiv:2303.08810) and its block.

Content-adaptive sparse attention for 2D feature maps: the map is cut into regions, each region
keeps the `topk` regions whose mean key best matches its mean query, and every query attends
token-to-token only to the keys/values of those gathered regions. Written from the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError


def region_shape(height: int, width: int, region_size: int | None = None) -> tuple[int, int]:
    """The region (rows, cols) in tokens for a `height` x `width` map.

    `region_size=None` (the default) makes the region side grow with the map:
    side = round(N^(1/6)) for N = height * width tokens, so a region holds about N^(1/3) tokens
    and there are about N^(2/3) regions (S ~ N^(1/3) per side, as in the paper's complexity
    analysis). An int fixes the side. Either way a side never exceeds the map, so a map smaller
    than a region is a single region without padding.
    """
    if region_size is not None and region_size < 1:
        raise ModelError(f"region_size must be >= 1 or None, got {region_size}")
    height, width = int(height), int(width)  # plain ints also while tracing for export
    side = region_size if region_size is not None else max(1, round((height * width) ** (1 / 6)))
    return min(side, height), min(side, width)


class BiLevelRoutingAttention(nn.Module):
    """Multi-head bi-level routing attention on a channels-last map `B x H x W x C`.

    1. q, k, v = linear(x); the map is zero-padded at the bottom/right to whole regions of
       `region_shape(H, W, region_size)` tokens and cut into R regions of T tokens.
    2. Region level: q_r, k_r = mean of q, k over the *valid* tokens of each region; affinity
       A_r = q_r k_r^T (R x R, shared by the heads); each region keeps its `topk` regions.
    3. Token level: each query attends (softmax over d^-1/2 q k^T, per head) only to the
       k*T keys/values gathered from its region's routed regions. Padded keys are masked out;
       padded queries are cropped away. Every region has a valid token (padding < region side),
       so no softmax row is empty.
    4. Local context enhancement: a depthwise `local_kernel` x `local_kernel` conv on v (the
       unpadded map) is added to the attention output; `local_kernel=0` disables it.
    5. Output projection.

    Cost for N tokens, C channels, region side r (R = N / r^2 regions):
    projections O(N C^2), routing O(R^2 C) = O(N^2 C / r^4), token attention O(N k r^2 C).
    With the default r ~ N^(1/6) both attention terms are O(N^(4/3) C) (the paper's
    O((HW)^(4/3)) with S ~ N^(1/3) regions per side), and so is the memory: the R x R affinity
    and the N x heads x k r^2 attention weights; gathered keys/values take k N C. Dense
    attention is O(N^2 C) time and O(N^2) memory. A fixed `region_size` makes the token term
    linear and the routing O(N^2 C / r^4) (quadratic with a small constant, negligible for
    the maps of a U-Net at r >= 4). The routing is a hard top-k and carries no
    gradient (as in the paper); q and k learn through the token-level attention.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        topk: int = 4,
        region_size: int | None = None,
        local_kernel: int = 5,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ModelError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if topk < 1:
            raise ModelError(f"topk must be >= 1, got {topk}")
        if local_kernel < 0 or (local_kernel and local_kernel % 2 == 0):
            raise ModelError(f"local_kernel must be 0 or odd, got {local_kernel}")
        region_shape(1, 1, region_size)  # validates region_size
        self.num_heads = num_heads
        self.topk = topk
        self.region_size = region_size
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)
        self.local = (nn.Conv2d(channels, channels, local_kernel, padding=local_kernel // 2,
                                groups=channels) if local_kernel else None)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[-1]
        h, w = int(x.shape[1]), int(x.shape[2])  # static region layout (also when tracing)
        kv_map = self.kv(x)
        grid = self._grid(h, w)
        q, kv = self._split(self.q(x), grid), self._split(kv_map, grid)
        valid = self._valid(h, w, grid, x.device)
        idx = self._route(q, kv[..., :c], valid)
        n_regions, tokens, topk = q.shape[1], q.shape[2], idx.shape[-1]

        # Gather the routed regions' keys/values: (B R) x (k T) x 2C. index_select keeps the
        # backward a linear index_add instead of a scatter into an R x R expansion.
        flat = (idx + n_regions * torch.arange(b, device=x.device).view(b, 1, 1)).reshape(-1)
        kv = kv.reshape(b * n_regions, tokens, 2 * c).index_select(0, flat)
        kv = kv.reshape(b * n_regions, topk * tokens, 2 * c)
        mask = None
        if valid is not None:
            mask = valid.index_select(0, idx.reshape(-1)).reshape(b * n_regions, 1, 1, -1)

        heads, d = self.num_heads, c // self.num_heads
        q = q.reshape(b * n_regions, tokens, heads, d).transpose(1, 2)
        k, v = (t.reshape(b * n_regions, topk * tokens, heads, d).transpose(1, 2)
                for t in kv.chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self._merge(out.transpose(1, 2).reshape(b, n_regions, tokens, c), grid, h, w)
        if self.local is not None:
            out = out + self.local(kv_map[..., c:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)

    @torch.no_grad()
    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Routed region indices `B x R x k` for a `B x H x W x C` map (regions row-major)."""
        h, w, c = int(x.shape[1]), int(x.shape[2]), x.shape[3]
        grid = self._grid(h, w)
        k = self._split(self.kv(x)[..., :c], grid)
        return self._route(self._split(self.q(x), grid), k, self._valid(h, w, grid, x.device))

    @torch.no_grad()
    def _route(self, q: torch.Tensor, k: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Top-k region indices from the region-mean affinity (padded tokens are zeros)."""
        count = q.shape[2] if valid is None else valid.sum(dim=1, keepdim=True).to(q.dtype)
        q_r, k_r = q.sum(dim=2) / count, k.sum(dim=2) / count
        affinity = q_r @ k_r.transpose(1, 2)
        return affinity.topk(min(self.topk, affinity.shape[-1]), dim=-1).indices

    def _grid(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(regions per column, regions per row, region rows, region cols)."""
        rh, rw = region_shape(h, w, self.region_size)
        return -(-h // rh), -(-w // rw), rh, rw

    @staticmethod
    def _split(t: torch.Tensor, grid: tuple[int, int, int, int]) -> torch.Tensor:
        """B x H x W x C -> B x R x T x C, zero-padding the bottom/right to whole regions."""
        sh, sw, rh, rw = grid
        pad_h, pad_w = sh * rh - int(t.shape[1]), sw * rw - int(t.shape[2])
        if pad_h or pad_w:
            t = F.pad(t, (0, 0, 0, pad_w, 0, pad_h))
        t = t.reshape(t.shape[0], sh, rh, sw, rw, t.shape[-1]).transpose(2, 3)
        return t.reshape(t.shape[0], sh * sw, rh * rw, t.shape[-1])

    def _valid(
        self, h: int, w: int, grid: tuple[int, int, int, int], device: torch.device
    ) -> torch.Tensor | None:
        """R x T mask of the real (not padded) tokens, or None without padding."""
        sh, sw, rh, rw = grid
        if sh * rh == h and sw * rw == w:
            return None
        return self._split(torch.ones(1, h, w, 1, dtype=torch.bool, device=device), grid)[0, ..., 0]

    @staticmethod
    def _merge(t: torch.Tensor, grid: tuple[int, int, int, int], h: int, w: int) -> torch.Tensor:
        """B x R x T x C -> B x H x W x C, dropping the padding."""
        sh, sw, rh, rw = grid
        t = t.reshape(t.shape[0], sh, sw, rh, rw, t.shape[-1]).transpose(2, 3)
        return t.reshape(t.shape[0], sh * rh, sw * rw, t.shape[-1])[:, :h, :w]


class SparseAttentionBlock(nn.Module):
    """The BiFormer block on a `B x C x H x W` map, pre-norm with residuals.

    x = x + dwconv3x3(x)  (positional encoding); x = x + BRA(LN(x)); x = x + MLP(LN(x)),
    MLP = Linear(C, mlp_ratio C) -> GELU -> Linear(mlp_ratio C, C). Keeps C and H x W.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        topk: int = 4,
        region_size: int | None = None,
        mlp_ratio: float = 3.0,
        local_kernel: int = 5,
    ) -> None:
        super().__init__()
        hidden = round(channels * mlp_ratio)
        self.pos = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.attn = BiLevelRoutingAttention(channels, num_heads, topk, region_size, local_kernel)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(),
                                 nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        t = x.permute(0, 2, 3, 1)
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous()
