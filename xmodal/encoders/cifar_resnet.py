"""CIFAR-style ResNets (He et al. 2016, section 4.2): 3x3 stem, three stages, no max-pool.

Small enough to train on a CPU, and the family the KD literature (CRD, WCoRD) reports on
(resnet8x4, resnet20, resnet32x4). Depth = 6n + 2 with n basic blocks per stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from xmodal.core.checks import one_of, positive, require
from xmodal.core.registry import BACKBONES
from xmodal.encoders.base import chain_stages

Norm = Literal["batch", "group"]


@dataclass
class CifarResNetOptions:
    """Options of every CIFAR ResNet (checked when a config is loaded).

    Attributes:
        width_multiplier: scales every stage's channels (rounded, at least 1).
        norm: ``batch`` or ``group`` (batch-independent).
    """

    width_multiplier: float = 1.0
    norm: Norm = "batch"

    def __post_init__(self) -> None:
        require(self, {"width_multiplier": positive(), "norm": one_of(("batch", "group"))})


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm, or GroupNorm (up to 8 groups), which does not depend on the batch.

    With GroupNorm the same model on N processes with batch B computes exactly what one process
    does with N*B.
    """
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: Norm = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), norm_layer(norm, out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W]`` -> ``[B, out, H / stride, W / stride]``."""
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem + 3 stages of ``blocks`` basic blocks with widths ``widths`` (strides 1, 2, 2).

    Input ``[B, in_channels, H, W]``; stage maps at ``H``, ``H/2``, ``H/4``;
    ``out_dim = widths[-1]``. ``norm``: ``batch`` (the literature's) or ``group``
    (batch-independent).
    """

    def __init__(
        self,
        in_channels: int,
        blocks: int,
        widths: tuple[int, int, int],
        stem_width: int | None = None,
        norm: Norm = "batch",
    ) -> None:
        super().__init__()
        if in_channels < 1 or blocks < 1:
            raise ValueError(f"need in_channels >= 1 and blocks >= 1, got {in_channels}, {blocks}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
            norm_layer(norm, stem),
            nn.ReLU(inplace=True),
        )
        stages, ch = [], stem
        for i, width in enumerate(widths):
            layers = [
                BasicBlock(ch if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, norm)
                for j in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            ch = width
        self.stages = nn.ModuleList(stages)
        self.out_dim = widths[-1]
        self.stage_channels = list(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[B, C, H, W]`` -> the three stages' maps, at ``H``, ``H/2`` and ``H/4``."""
        return chain_stages(self.stages, self.stem(x))


def _register(
    name: str, blocks: int, widths: tuple[int, int, int], stem: int | None = None
) -> None:
    def build(in_channels: int, width_multiplier: float = 1.0, norm: Norm = "batch") -> CifarResNet:
        scaled = tuple(max(1, round(w * width_multiplier)) for w in widths)
        stem_w = max(1, round(stem * width_multiplier)) if stem else None
        return CifarResNet(in_channels, blocks, scaled, stem_w, norm)  # type: ignore[arg-type]

    build.__doc__ = f"CIFAR ResNet-{6 * blocks + 2}, widths {widths}"
    build.options = CifarResNetOptions  # type: ignore[attr-defined]  # checked when a config loads
    BACKBONES.add(name, build, build.__doc__)


for _n in (1, 2, 3, 5):
    _register(f"resnet{6 * _n + 2}", _n, (16, 32, 64))
_register("resnet8x4", 1, (64, 128, 256), stem=32)
_register("resnet32x4", 5, (64, 128, 256), stem=32)
