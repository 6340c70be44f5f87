"""The ``imu`` front end: accelerometer (m/s^2) and gyroscope (rad/s) windows ``[B, 6, T]``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xmodal.core.checks import positive, require

GRAVITY = 9.80665  # m/s^2 in one g


@dataclass
class ImuOptions:
    """Options of ``imu`` (``frontends.imu`` in a run config), checked when the config loads.

    Attributes:
        clip: limit of each output value, in g (accelerometer) and rad/s (gyroscope).
    """

    clip: float = 8.0

    def __post_init__(self) -> None:
        require(self, {"clip": positive()})


class ImuFrontend(nn.Module):
    """IMU ``[B, 6, T]`` (3 axes m/s^2, 3 axes rad/s) -> ``[B, 6, T]`` in g and rad/s, clipped."""

    layout = "sequence"  # [B, C, T]: runs behind sequence backbones only
    default_backbone = "imu-cnn"  # used when the configured backbone takes images
    image_aligned = False  # time steps, not pixels
    out_channels = 6
    options = ImuOptions
    scale: Tensor  # [1, 6, 1]: 1/g for the accelerometer, 1 for the gyroscope

    def __init__(self, clip: float = 8.0) -> None:
        super().__init__()
        self.clip = ImuOptions(clip).clip  # the same checks when built in code
        scale = torch.tensor([1 / GRAVITY] * 3 + [1.0] * 3).view(1, 6, 1)
        self.register_buffer("scale", scale, persistent=False)

    def example_input(self, batch: int = 2) -> Tensor:
        """``[batch, 6, 50]``: one second at 50 Hz, gravity on z, one missing sample (NaN)."""
        x = torch.randn(batch, 6, 50)
        x[:, 2] += GRAVITY
        x[:, 0, 0] = float("nan")
        return x

    def forward(self, imu: Tensor) -> Tensor:
        """``[B, 6, T]`` -> ``[B, 6, T]`` float32; a missing (non-finite) value becomes 0."""
        if imu.ndim != 3 or imu.shape[1] != 6:
            raise ValueError(f"imu input must be [B, 6, T], got {list(imu.shape)}")
        x = torch.nan_to_num(imu.float() * self.scale, nan=0.0, posinf=0.0, neginf=0.0)
        return x.clamp(-self.clip, self.clip)
