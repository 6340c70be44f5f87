"""CIFAR-style ResNets (He et al. 2016, section 4.2): 3x3 stem, three stages, no max-pool.

Small enough to train on a CPU, and the family the KD literature (CRD, WCoRD) reports on
(resnet8x4, resnet20, resnet32x4). Depth = 6n + 2 with n basic blocks per stage.
"""

from __future__ import annotations

from torch import Tensor, nn

from xmodal.core.registries import ENCODERS


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem + 3 stages of ``blocks`` basic blocks with widths ``widths`` (strides 1, 2, 2).

    Input ``[B, in_channels, H, W]``; stage maps at ``H``, ``H/2``, ``H/4``; ``out_dim = widths[-1]``.
    """

    def __init__(self, in_channels: int, blocks: int, widths: tuple[int, int, int],
                 stem_width: int | None = None) -> None:
        super().__init__()
        if in_channels < 1 or blocks < 1:
            raise ValueError(f"need in_channels >= 1 and blocks >= 1, got {in_channels}, {blocks}")
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        stages, ch = [], stem
        for i, width in enumerate(widths):
            layers = [BasicBlock(ch if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1)
                      for j in range(blocks)]
            stages.append(nn.Sequential(*layers))
            ch = width
        self.stages = nn.ModuleList(stages)
        self.out_dim = widths[-1]
        self.stage_channels = list(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def _register(name: str, blocks: int, widths: tuple[int, int, int], stem: int | None = None) -> None:
    def build(in_channels: int, width_multiplier: float = 1.0) -> CifarResNet:
        scaled = tuple(max(1, round(w * width_multiplier)) for w in widths)
        stem_w = max(1, round(stem * width_multiplier)) if stem else None
        return CifarResNet(in_channels, blocks, scaled, stem_w)  # type: ignore[arg-type]

    build.__doc__ = f"CIFAR ResNet-{6 * blocks + 2}, widths {widths}"
    ENCODERS.add(name, build, build.__doc__)


for _n in (1, 2, 3, 5):
    _register(f"resnet{6 * _n + 2}", _n, (16, 32, 64))
_register("resnet8x4", 1, (64, 128, 256), stem=32)
_register("resnet32x4", 5, (64, 128, 256), stem=32)
