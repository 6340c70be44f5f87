"""PointNet-style backbone (Qi et al. 2017, without the T-Nets): a shared per-point MLP.

Every layer is a 1x1 convolution over points, so each point is processed independently; the
:class:`~xmodal.encoders.base.Encoder` then max-pools over points (``pooling = "max"``), which
makes the embedding independent of the order of the points and of repeated points.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from xmodal.core.registries import ENCODERS

Norm = Literal["batch", "group"]
WIDTHS = (64, 128, 256)


def norm_layer_1d(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm over batch and points, or GroupNorm (up to 8 groups, batch-independent)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.BatchNorm1d(channels)


class PointNet(nn.Module):
    """Stages of shared per-point layers ``Conv1d(k=1) + norm + ReLU``.

    Input ``[B, in_channels, N]``; each stage's output ``[B, C_i, N]`` keeps one column per input
    point (for dense use); ``out_dim = widths[-1]``.

    Args:
        widths: channels of each stage.
        layers: layers per stage (the first changes the width).
        norm: ``batch`` or ``group``.
    """

    layout = "points"  # takes [B, C, N]
    pooling = "max"  # the symmetric function that makes the embedding order-free

    def __init__(self, in_channels: int, widths: tuple[int, ...] = WIDTHS, layers: int = 1,
                 norm: Norm = "batch") -> None:
        super().__init__()
        if in_channels < 1 or layers < 1 or not widths or min(widths) < 1:
            raise ValueError(f"pointnet needs in_channels, layers and widths >= 1, got "
                             f"{in_channels}, {layers}, {list(widths)}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        stages, ch = [], in_channels
        for width in widths:
            block = []
            for _ in range(layers):
                block += [nn.Conv1d(ch, width, 1, bias=False), norm_layer_1d(norm, width),
                          nn.ReLU(inplace=True)]
                ch = width
            stages.append(nn.Sequential(*block))
        self.stages = nn.ModuleList(stages)
        self.out_dim = widths[-1]
        self.stage_channels = list(widths)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[B, C, N]`` -> per-point features of every stage, ``[B, C_i, N]``."""
        if x.ndim != 3:
            raise ValueError(f"pointnet takes point sets [B, C, N], got {list(x.shape)}")
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


@ENCODERS.register("pointnet")
def build_pointnet(in_channels: int, width: float = 1.0, layers: int = 1,
                   norm: Norm = "batch") -> PointNet:
    """PointNet-style point-set encoder: a shared per-point MLP (64, 128, 256 channels x
    width), max-pooled."""
    if not width > 0:
        raise ValueError(f"pointnet width must be > 0, got {width!r}")
    widths = tuple(max(1, round(w * width)) for w in WIDTHS)
    return PointNet(in_channels, widths, layers, norm)


build_pointnet.layout = "points"  # type: ignore[attr-defined]  # read before building
