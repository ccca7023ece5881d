"""UNet++ (Zhou et al., DLMIA 2018 / IEEE TMI 2019): nested dense skip pathways.

The grid of the paper's figure, node X^{i,j} at level i (down-sampling i times) and column j:

    X^{i,0}   = block(pool(X^{i-1,0}))                               the encoder backbone
    X^{i,j}   = block(cat[X^{i,0}, ..., X^{i,j-1}, up(X^{i+1,j-1})])  the nested skips, j >= 1

with block = [3x3 conv -> norm -> ReLU] x 2. Heads are 1x1 convs on the top row X^{0,j}: one on
X^{0,n} or, with deep supervision, one on each of X^{0,1..n}. A deep-supervised model can be
pruned at inference to UNet++ L^k: only the nodes with i + j <= k run and head k answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelError
from ..nn.blocks import DoubleConv
from ..nn.factory import NormKind, UpKind, create_upsample
from .base import SegmentationModel
from .registry import register_model
from .unet import resolve_widths


class UNetPlusPlus(SegmentationModel):
    """The nested U-Net: a grid of nodes X^{i,j}, i + j <= n, with n = len(widths) - 1.

    `full_depth` is n, the number of down-samplings: the full network is UNet++ L^n.

    Args:
        widths: channels per level, shallow to deep (the last is the bottleneck X^{n,0}).
        norm: normalisation in every block. bias: conv bias in the blocks (None: only
            without a norm).
        upsample: "transpose" (2x2 transposed conv per node) or "bilinear" / "nearest"
            (interpolation without a conv).
        deep_supervision: a head on every X^{0,j}, j = 1..n; training-mode forward returns
            `[out_n, out_1, ..., out_{n-1}]` (main output first).
        output_weights: loss weight per output in that order; default equal weights summing
            to 1 (the mean over heads, as in the paper's loss).
        prune_depth: with deep supervision, eval-mode forward runs only UNet++ L^k (the
            nodes with i + j <= k) and returns head k; None runs the full network.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        norm: NormKind = "batch",
        upsample: UpKind = "transpose",
        deep_supervision: bool = False,
        output_weights: Sequence[float] | None = None,
        prune_depth: int | None = None,
        bias: bool | None = None,
    ) -> None:
        super().__init__(in_channels, num_classes)
        if len(widths) < 2:
            raise ModelError(f"UNet++ needs at least 2 levels, got widths {list(widths)}")
        n = len(widths) - 1
        self.full_depth = n
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2)
        # Channels an up-sampled X^{i+1,j-1} brings to level i.
        up_out = [widths[i] if upsample == "transpose" else widths[i + 1] for i in range(n)]
        # nodes[i][j] is X^{i,j}; ups[i][j - 1] up-samples X^{i+1,j-1} for X^{i,j}.
        self.nodes = nn.ModuleList(
            nn.ModuleList(
                DoubleConv(
                    (in_channels if i == 0 else widths[i - 1]) if j == 0
                    else j * widths[i] + up_out[i],
                    widths[i], norm=norm, bias=bias)
                for j in range(n - i + 1))
            for i in range(n + 1))
        self.ups = nn.ModuleList(
            nn.ModuleList(create_upsample(upsample, widths[i + 1], widths[i], conv=False,
                                            align_corners=True)
                          for _ in range(1, n - i + 1))
            for i in range(n))
        # heads on X^{0,j} for j in head_columns
        self.head_columns = tuple(range(1, n + 1)) if deep_supervision else (n,)
        self.heads = nn.ModuleList(
            nn.Conv2d(widths[0], num_classes, kernel_size=1) for _ in self.head_columns)
        if deep_supervision:
            weights = (tuple(float(w) for w in output_weights) if output_weights is not None
                       else (1.0 / n,) * n)
            if len(weights) != n:
                raise ModelError(f"output_weights needs {n} values (one per head), "
                                 f"got {len(weights)}")
            self.output_weights = weights
        elif output_weights is not None:
            raise ModelError("output_weights needs deep_supervision=True")
        self._prune_depth: int | None = None
        self.prune(prune_depth)

    @property
    def prune_depth(self) -> int | None:
        """The depth k of UNet++ L^k that eval-mode forward runs; None for the full network."""
        return self._prune_depth

    @prune_depth.setter
    def prune_depth(self, depth: int | None) -> None:
        self.prune(depth)

    def prune(self, depth: int | None) -> UNetPlusPlus:
        """Run only UNet++ L^`depth` in eval mode (None: the full network); returns self."""
        if depth is not None:
            if not self.deep_supervision:
                raise ModelError("pruning UNet++ needs deep_supervision=True: without it only "
                                 f"X^{{0,{self.full_depth}}} has a trained head")
            if not 1 <= depth <= self.full_depth:
                raise ModelError(f"prune depth must be in 1..{self.full_depth}, got {depth}")
        self._prune_depth = depth
        return self

    def active_depth(self) -> int:
        """Depth of the sub-network the next forward runs (pruning applies in eval mode)."""
        if self.training or self._prune_depth is None:
            return self.full_depth
        return self._prune_depth

    @property
    def size_divisor(self) -> int:  # type: ignore[override]
        return 2 ** self.active_depth()

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        depth = self.active_depth()
        grid: list[list[torch.Tensor]] = [[] for _ in range(depth + 1)]  # grid[i][j] = X^{i,j}
        for k in range(depth + 1):  # anti-diagonal i + j = k, one backbone level deeper each
            grid[k].append(self.nodes[k][0](self.pool(grid[k - 1][0]) if k else x))
            for j in range(1, k + 1):
                i = k - j
                up = self.ups[i][j - 1](grid[i + 1][j - 1])
                grid[i].append(self.nodes[i][j](torch.cat([*grid[i], up], dim=1)))
        top = grid[0]
        if not self.training:
            return self.heads[self.head_columns.index(depth)](top[depth])
        outputs = [head(top[j]) for head, j in zip(self.heads, self.head_columns, strict=True)]
        if self.deep_supervision:
            return [outputs[-1], *outputs[:-1]]
        return outputs[0]


@register_model(
    paper="Zhou, Rahman Siddiquee, Tajbakhsh, Liang. UNet++: A Nested U-Net Architecture for "
          "Medical Image Segmentation. DLMIA 2018. arXiv:1807.10165; UNet++: Redesigning Skip "
          "Connections to Exploit Multiscale Features in Image Segmentation. IEEE TMI 2019. "
          "arXiv:1912.05074",
    year=2018,
    adds="nested dense skip pathways between encoder and decoder, deep supervision on every "
         "top-row node, and inference-time pruning to shallower sub-networks",
    presets={
        # The common PyTorch form: biased convs + BN, bilinear x2 without a conv, logits heads.
        "reference": {"base_channels": 32, "depth": 5, "norm": "batch", "upsample": "bilinear",
                      "bias": True},
        "reference_ds": {"base_channels": 32, "depth": 5, "norm": "batch",
                         "upsample": "bilinear", "bias": True, "deep_supervision": True},
        # The layer layout of the original Keras Nest_Net (no norm, 2x2 transposed-conv up);
        # its dropout (train-time only) is not reproduced and its sigmoid is left to the loss.
        "original": {"base_channels": 32, "depth": 5, "norm": "none", "upsample": "transpose"},
        "tiny": {"base_channels": 8, "depth": 3, "deep_supervision": True},
    },
    reference_params={"reference": 9_163_329, "reference_ds": 9_163_428,
                      "original": 9_042_177},
)
def unetpp(
    in_channels: int = 3,
    num_classes: int = 1,
    base_channels: int | None = None,
    depth: int | None = None,
    widths: Sequence[int] | None = None,
    norm: NormKind = "batch",
    upsample: UpKind = "transpose",
    deep_supervision: bool = False,
    output_weights: Sequence[float] | None = None,
    prune_depth: int | None = None,
    bias: bool | None = None,
) -> UNetPlusPlus:
    """UNet++: nested dense skips X^{i,j}, optional deep supervision and inference pruning.

    Defaults follow the paper: widths 32-64-128-256-512 (`base_channels` doubled over
    `depth` levels, or explicit `widths`; 5 levels make the full network UNet++ L^4) and 2x2
    transposed-conv up-sampling as in the original code, with batch norm (the original has
    none; the TMI version and the common PyTorch form use it) and no conv bias before a norm.
    `preset="reference"` gives the common PyTorch form (9,163,329 parameters for in=3, out=1;
    `reference_ds` with 4 heads: 9,163,428). `deep_supervision` returns
    `[X^{0,n} head, X^{0,1} head, ...]` in training mode with equal `output_weights` by
    default; `prune_depth` (or `model.prune(k)` after training) makes eval-mode forward run
    only UNet++ L^k.

    Args:
        in_channels, num_classes, norm, bias: as `unet`.
        base_channels, depth: widths base_channels * 2^l over `depth` levels (None: 32
            and 5); the full network is UNet++ L^(depth-1). `widths` gives them explicitly
            instead (not together with them).
        upsample: transpose (2x2 transposed conv), bilinear or nearest (no conv).
        deep_supervision: a head on every top-row node; training mode returns a list.
        output_weights: loss weight per head (default: equal, summing to 1).
        prune_depth: eval-mode forward runs only UNet++ L^k (needs deep supervision).

    Returns:
        A `UNetPlusPlus`: `B x K x H x W` logits (with deep supervision, in training mode,
        the list [head n, head 1, ..., head n-1]).

    Raises:
        ModelError: fewer than 2 levels, `widths` with `base_channels` or `depth`,
            output_weights of the wrong length, or pruning without deep supervision.

    Example:
        >>> model = create_model("unetpp", preset="tiny").eval()  # L^2, deep supervision
        >>> model.prune(1).size_divisor, model(torch.randn(1, 3, 29, 35)).shape
        (2, torch.Size([1, 1, 29, 35]))
    """
    return UNetPlusPlus(
        in_channels, num_classes,
        resolve_widths(widths, base_channels, depth, 32, 5),
        norm=norm, upsample=upsample, deep_supervision=deep_supervision,
        output_weights=output_weights, prune_depth=prune_depth, bias=bias,
    )
