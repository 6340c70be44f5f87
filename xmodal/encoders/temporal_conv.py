"""A temporal convolutional network (TCN; Bai et al. 2018) for 1-D sequences ``[B, C, T]``.

IMU, EMG, ECG, raw waveforms, radar returns: channels over time. A 1x1 convolution lifts the
``C`` input channels to ``width``; then ``depth`` residual blocks of two dilated convolutions
(dilation ``1, 2, 4, ...``; ``same`` padding, so every block keeps ``T``) each see twice as far
back and ahead as the one before: the receptive field grows exponentially with depth, the
parameters only linearly. The embedding is the average over time, so any ``T`` >= 1 works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from xmodal.core.checks import at_least, one_of, require, within
from xmodal.core.registry import BACKBONES
from xmodal.encoders.base import chain_stages

Norm = Literal["batch", "group"]
SEQUENCE = "sequence"  # the layout: [B, C, T] (xmodal.encoders.base.SEQUENCE)


@dataclass
class TemporalConvOptions:
    """Options of ``temporal_conv`` (checked when a config is loaded).

    Attributes:
        width: channels of every block (and of the embedding, ``out_dim``).
        depth: residual blocks; block ``i`` is dilated by ``2**i``.
        kernel_size: taps of each convolution (odd, so that the padding is symmetric).
        norm: ``batch`` (BatchNorm over batch and time) or ``group`` (GroupNorm, up to 8
            groups: batch-independent).
        dropout: dropout probability between the two convolutions of a block (0: none).
    """

    width: int = 64
    depth: int = 4
    kernel_size: int = 3
    norm: Norm = "batch"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        require(
            self,
            {
                "width": at_least(1),
                "depth": at_least(1),
                "kernel_size": (
                    lambda v: at_least(3)[0](v) and v % 2 == 1,
                    "an odd integer >= 3",
                ),
                "norm": one_of(("batch", "group")),
                "dropout": within(0, 1, high_open=True),
            },
        )


def receptive_field(depth: int, kernel_size: int) -> int:
    """Input steps that one output step of the last block sees: ``1 + 2 (k - 1) (2**depth - 1)``."""
    return 1 + 2 * (kernel_size - 1) * ((1 << depth) - 1)


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm over batch and time, or GroupNorm (up to 8 groups, batch-independent)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.BatchNorm1d(channels)


class TemporalBlock(nn.Module):
    """A residual block ``[B, C, T]`` -> ``[B, C, T]`` of two convolutions dilated alike.

    ``relu(x + norm(conv(dropout(relu(norm(conv(x)))))))``.
    """

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, norm: Norm, dropout: float
    ) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, 1, pad, dilation, bias=False)
        self.norm1 = norm_layer(norm, channels)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, 1, pad, dilation, bias=False)
        self.norm2 = norm_layer(norm, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        out = self.drop(nn.functional.relu(self.norm1(self.conv1(x))))
        return nn.functional.relu(x + self.norm2(self.conv2(out)))


class TemporalConvNet(nn.Module):
    """A 1x1 stem, then ``depth`` :class:`TemporalBlock` s dilated by ``1, 2, 4, ...``.

    Input ``[B, in_channels, T]``; every block's output ``[B, width, T]`` is a stage (one column
    per input step); the embedding is their last one averaged over time, ``out_dim = width``.

    Attributes:
        receptive_field: input steps one output step sees (:func:`receptive_field`).
    """

    layout = SEQUENCE  # takes [B, C, T]

    def __init__(self, in_channels: int, options: TemporalConvOptions) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"temporal_conv needs in_channels >= 1, got {in_channels!r}")
        width = options.width
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, 1, bias=False),
            norm_layer(options.norm, width),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.ModuleList(
            TemporalBlock(width, options.kernel_size, 2**i, options.norm, options.dropout)
            for i in range(options.depth)
        )
        self.out_dim = width
        self.stage_channels = [width] * options.depth
        self.receptive_field = receptive_field(options.depth, options.kernel_size)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[B, C, T]`` -> every block's output ``[B, width, T]``."""
        if x.ndim != 3 or x.shape[1] != self.in_channels or x.shape[2] < 1:
            raise ValueError(
                f"temporal_conv takes sequences [B, C={self.in_channels}, T >= 1] (channels "
                f"first), got {list(x.shape)}"
            )
        return chain_stages(self.stages, self.stem(x))

    def pool(self, last: Tensor) -> Tensor:
        """Last stage ``[B, C, T]`` -> embedding ``[B, C]``: the average over time."""
        return last.mean(-1)


@BACKBONES.register("temporal_conv")
def build_temporal_conv(
    in_channels: int,
    width: int = 64,
    depth: int = 4,
    kernel_size: int = 3,
    norm: Norm = "batch",
    dropout: float = 0.0,
) -> TemporalConvNet:
    """Dilated temporal conv net (TCN) for sequences [B, C, T], averaged over time."""
    options = TemporalConvOptions(width, depth, kernel_size, norm, dropout)
    return TemporalConvNet(in_channels, options)


build_temporal_conv.layout = SEQUENCE  # read before building
build_temporal_conv.options = TemporalConvOptions  # checked when a config loads
