"""Split attention (ResNeSt, Zhang et al., 2020, arXiv:2004.08955) and its bottleneck block.

Split-attention conv with radix R and cardinality G:

    U = ReLU(BN(grouped conv C_in -> R C (groups R G)))      split into R maps U_1..U_R
    s = global average pool(sum_r U_r)
    a = fc2(ReLU(BN(fc1(s))))                                  fc1: C -> max(C_in R / 4, 32)
    a_r = softmax over r (sigmoid when R = 1), per cardinal group
    out = sum_r a_r * U_r
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .blocks import ConvNormAct


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm for globally pooled `B x C x 1 x 1` features.

    A training batch of a single sample has one value per channel, whose batch statistics are
    undefined (plain BatchNorm raises); it is normalised with the running statistics instead,
    which it leaves unchanged. Batches of two or more behave exactly like `nn.BatchNorm2d`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, eps=self.eps)
        return super().forward(x)


class SplitAttentionConv(nn.Module):
    """ResNeSt's SplAtConv2d: a k x k conv over R splits, re-weighted by split attention.

    `bias` is the bias of the grouped conv (it is followed by BN); fc1 and fc2 carry biases
    as in ResNeSt.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        radix: int = 2,
        groups: int = 1,
        bias: bool = False,
        reduction: int = 4,
        min_attention_channels: int = 32,
    ) -> None:
        super().__init__()
        if radix < 1 or groups < 1 or in_channels % (radix * groups) or out_channels % groups:
            raise ModelError(f"split attention needs radix, groups >= 1, in_channels divisible "
                             f"by radix * groups and out_channels by groups; got radix {radix}, "
                             f"groups {groups}, channels {in_channels} -> {out_channels}")
        self.radix, self.groups = radix, groups
        self.conv = ConvNormAct(in_channels, out_channels * radix, kernel_size,
                                groups=groups * radix, bias=bias)
        inter = max(in_channels * radix // reduction, min_attention_channels)
        self.attention = nn.Sequential(
            nn.Conv2d(out_channels, inter, 1, groups=groups),
            PooledBatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Conv2d(inter, out_channels * radix, 1, groups=groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        splits = self.conv(x).unflatten(1, (self.radix, -1))  # B x R x C x H x W
        pooled = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        # fc2 is grouped: its channels are ordered (group, split, channel of the group)
        logits = self.attention(pooled).view(batch, self.groups, self.radix, -1).transpose(1, 2)
        weights = logits.softmax(dim=1) if self.radix > 1 else logits.sigmoid()
        return (weights.reshape(batch, self.radix, -1, 1, 1) * splits).sum(dim=1)


class SplitAttentionBlock(nn.Module):
    """ResNeSt bottleneck keeping the channels: ReLU(x + BN(1x1(SplAt(ReLU(BN(1x1 x)))))).

    The bottleneck width is `channels // expansion` (ResNeSt: 4; DPSAU2-Net: 1). The 1x1
    convs have no bias; `bias` is that of the split-attention conv.
    """

    def __init__(
        self,
        channels: int,
        radix: int = 2,
        groups: int = 1,
        expansion: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        width = max(channels // expansion, groups)
        self.body = nn.Sequential(
            ConvNormAct(channels, width, 1, bias=False),
            SplitAttentionConv(width, width, 3, radix=radix, groups=groups, bias=bias),
            ConvNormAct(width, channels, 1, bias=False, act=False),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))
