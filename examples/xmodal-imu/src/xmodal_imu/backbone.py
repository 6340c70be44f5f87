"""The ``imu-cnn`` backbone: two strided 1-D convolution stages for sequences ``[B, C, T]``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from xmodal.core.checks import at_least, require


@dataclass
class ImuCnnOptions:
    """Options of ``imu-cnn`` (``distill.encoders.MODALITY.imu_cnn``), checked at load.

    Attributes:
        width: channels of the first stage; the second has twice as many (the embedding).
    """

    width: int = 32

    def __post_init__(self) -> None:
        require(self, {"width": at_least(1)})


class ImuCnn(nn.Module):
    """Two strided 1-D conv stages: ``[B, C, T]`` -> ``[B, w, T/2]``, ``[B, 2w, T/4]``.

    The factory xmodal calls is the class itself: ``ImuCnn(in_channels, **options)``. The
    embedding (``out_dim = 2 * width``) is the last map averaged over time (xmodal's default).
    """

    layout = "sequence"  # read from the class before building, and from the module after
    options = ImuCnnOptions

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        width = ImuCnnOptions(width).width
        self.stage_channels = [width, 2 * width]
        self.out_dim = 2 * width
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(c_in, c_out, 5, stride=2, padding=2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            )
            for c_in, c_out in ((in_channels, width), (width, 2 * width))
        )

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[B, C, T]`` -> the map of each stage, ``[B, C_i, T_i]``, coarsest last."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps
