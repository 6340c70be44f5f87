"""Modality front ends: raw sensor tensors in physical units -> normalised network input.

Each front end is registered under its modality name and tells the backbone how many input
channels it produces, and in which ``layout``: ``"image"`` maps ``[B, C, H, W]`` (the default),
``"points"`` sets ``[B, C, N]`` or ``"sequence"`` channels over time ``[B, C, T]``. Keeping this
step inside the encoder means checkpoints carry their own normalisation and users feed data in
its natural units (uint8 RGB, metres, waveform samples, sensor readings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torchaudio
from torch import Tensor, nn

from xmodal.core.checks import at_least, positive, require
from xmodal.core.config import AllowRepeats
from xmodal.core.registry import FRONTENDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channels_first(image: Tensor, modality: str) -> Tensor:
    """A ``[B, H, W, 3]`` image-like batch (any dtype) -> float ``[B, 3, H, W]``, unscaled."""
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"{modality} input must be [B, H, W, 3], got {list(image.shape)}")
    return image.permute(0, 3, 1, 2).float()


@FRONTENDS.register("rgb")
class RGBFrontend(nn.Module):
    """RGB ``[B, H, W, 3]`` (uint8 0..255 or float 0..1) -> ``[B, 3, H, W]``, ImageNet-normalised.

    Behind a backbone that normalises pixels with its own model's mean and std (timm, open_clip,
    Hugging Face models), the encoder sets ``normalise = False``: the output is then RGB in [0, 1].
    """

    image_aligned = True  # feature maps are aligned with image pixels
    out_channels = 3
    gives_pixels = True  # with normalise = False: RGB in [0, 1]
    mean: Tensor  # [1, 3, 1, 1] buffers, not saved with the weights
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.normalise = True
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def example_input(self, batch: int = 2) -> Tensor:
        """A random ``[batch, 16, 16, 3]`` uint8 image (for contract tests)."""
        return torch.randint(0, 256, (batch, 16, 16, 3), dtype=torch.uint8)

    def forward(self, image: Tensor) -> Tensor:
        """``[B, H, W, 3]`` -> ``[B, 3, H, W]`` float32."""
        x = channels_first(image, "rgb")
        if image.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std if self.normalise else x


@dataclass
class DepthOptions:
    """Options of the ``depth`` front end (checked when a config is loaded); see its Args."""

    mean_m: float = 3.0
    std_m: float = 1.5
    max_m: float = 10.0

    def __post_init__(self) -> None:
        require(self, {"std_m": positive(), "max_m": positive()})


@FRONTENDS.register("depth")
class DepthFrontend(nn.Module):
    """Metric z-depth ``[B, H, W]`` in metres -> ``[B, 1, H, W]`` standardised.

    Missing depth (0, negative or NaN, as in raw sensor maps) becomes 0 after standardisation,
    i.e. the mean depth, so holes never propagate NaN into the network.

    Args:
        mean_m, std_m: standardisation constants in metres (defaults fit indoor scenes, 0.5-10 m).
        max_m: depth is clipped to ``[0, max_m]`` metres before standardising.
    """

    image_aligned = True  # feature maps are aligned with image pixels
    out_channels = 1
    options = DepthOptions

    def __init__(self, mean_m: float = 3.0, std_m: float = 1.5, max_m: float = 10.0) -> None:
        super().__init__()
        if std_m <= 0 or max_m <= 0:
            raise ValueError(f"depth front end needs std_m > 0 and max_m > 0, got {std_m}, {max_m}")
        self.mean_m, self.std_m, self.max_m = mean_m, std_m, max_m

    def example_input(self, batch: int = 2) -> Tensor:
        """Random ``[batch, 16, 16]`` depth in metres, with a hole (0) (for contract tests)."""
        depth = torch.rand(batch, 16, 16) * 4 + 0.5
        depth[:, 0, 0] = 0.0
        return depth

    def forward(self, depth: Tensor) -> Tensor:
        """``[B, H, W]`` metres -> ``[B, 1, H, W]``; missing depth -> 0."""
        if depth.ndim != 3:
            raise ValueError(f"depth input must be [B, H, W] in metres, got {list(depth.shape)}")
        d = depth.float()
        valid = torch.isfinite(d) & (d > 0)
        x = (d.clamp(0.0, self.max_m) - self.mean_m) / self.std_m
        return torch.where(valid, x, torch.zeros_like(x)).unsqueeze(1)


@dataclass
class LogMelOptions:
    """Options of the ``audio`` front end (checked when a config is loaded); see its Args."""

    sample_rate: int = 8000
    n_fft: int = 256
    hop_length: int = 128
    n_mels: int = 32

    def __post_init__(self) -> None:
        require(
            self, {name: at_least(1) for name in ("sample_rate", "n_fft", "hop_length", "n_mels")}
        )


@FRONTENDS.register("audio")
class LogMelFrontend(nn.Module):
    """Waveform ``[B, T]`` (samples in [-1, 1]) -> log-mel ``[B, 1, n_mels, frames]``.

    Each clip's log-mel is standardised over all its bins, which removes loudness (clips are
    peak-normalised anyway) and keeps inputs at unit scale.

    Args:
        sample_rate: Hz. n_fft, hop_length: samples. n_mels: mel bands.
    """

    image_aligned = False  # maps are time x frequency, not pixels: no dense probes
    out_channels = 1
    options = LogMelOptions

    def __init__(
        self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 128, n_mels: int = 32
    ) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=20.0,
            f_max=sample_rate / 2,
            power=2.0,
        )

    def example_input(self, batch: int = 2) -> Tensor:
        """``[batch, 2048]`` random samples in [-1, 1] (for contract tests)."""
        return torch.rand(batch, 2048) * 2 - 1

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, T]`` samples -> ``[B, 1, n_mels, frames]``, standardised per clip."""
        if wave.ndim != 2:
            raise ValueError(f"audio input must be [B, T] samples, got {list(wave.shape)}")
        with torch.autocast(wave.device.type, enabled=False):  # FFT in float32
            logmel = torch.log(self.mel(wave.float()) + 1e-6)
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True).clamp_min(1e-3)
        return ((logmel - mean) / std).unsqueeze(1)


@FRONTENDS.register("hha")
class HHAFrontend(nn.Module):
    """HHA depth encoding ``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` scaled to about [-2, 2].

    HHA (Gupta et al. 2014): disparity, height above ground, angle with gravity. Same layout
    as RGB, so ImageNet-initialised backbones take it without changes.
    """

    image_aligned = True  # feature maps are aligned with image pixels
    out_channels = 3

    def example_input(self, batch: int = 2) -> Tensor:
        """A random ``[batch, 16, 16, 3]`` uint8 HHA image (for contract tests)."""
        return torch.randint(0, 256, (batch, 16, 16, 3), dtype=torch.uint8)

    def forward(self, image: Tensor) -> Tensor:
        """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` float32."""
        return (channels_first(image, "hha") / 255.0 - 0.5) / 0.25


@FRONTENDS.register("normals")
class NormalsFrontend(nn.Module):
    """Surface normals ``[B, H, W, 3]`` in the camera frame -> ``[B, 3, H, W]`` in [-1, 1].

    Unit floats, or int8 = 127 x unit as cached for NYU; 0 = unknown.
    """

    image_aligned = True  # feature maps are aligned with image pixels
    mirror_negates_channel = 0  # a left-right mirror flips the sign of n_x
    out_channels = 3

    def example_input(self, batch: int = 2) -> Tensor:
        """Random unit normals ``[batch, 16, 16, 3]`` (for contract tests)."""
        return torch.nn.functional.normalize(torch.randn(batch, 16, 16, 3), dim=-1)

    def forward(self, normals: Tensor) -> Tensor:
        """``[B, H, W, 3]`` -> ``[B, 3, H, W]`` float32 (NaN -> 0)."""
        x = channels_first(normals, "normals")
        if normals.dtype == torch.int8:
            x = x / 127.0
        return torch.nan_to_num(x, nan=0.0)


@dataclass
class PointsOptions:
    """Options of the ``points`` front end (checked when a config is loaded); see its Args."""

    features: int = 0

    def __post_init__(self) -> None:
        require(self, {"features": at_least(0)})


@FRONTENDS.register("points")
class PointsFrontend(nn.Module):
    """Point clouds ``[B, N, 3 + F]`` -> ``[B, 3 + F, N]``, centred and scaled into the unit ball.

    xyz in metres, then F per-point features; each cloud is centred on its centroid. A point
    with any non-finite value is missing: centroid and radius come from the other points, and
    it is replaced by a copy of the cloud's first valid point, which adds no new position (a
    per-point, max-pooling backbone embeds the cloud exactly as if the missing points were
    absent; a neighbourhood one sees the copies only near that point). A cloud with no valid
    point becomes zeros; a cloud of one point (radius 0) is centred but not scaled.

    Args:
        features: number F of per-point features after xyz (passed through unscaled).
    """

    image_aligned = False  # one column per point, not per pixel: no dense image probes
    layout = "points"  # [B, C, N]: needs a point backbone
    default_backbone = "pointnet"  # used when the configured backbone takes images
    options = PointsOptions

    def __init__(self, features: int = 0) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 0:
            raise ValueError(f"points front end needs features >= 0 (an integer), got {features!r}")
        self.features = features
        self.out_channels = 3 + features

    def example_input(self, batch: int = 2) -> Tensor:
        """``[batch, 64, 3 + F]`` random points in metres, one missing (NaN), for contract tests."""
        points = torch.randn(batch, 64, self.out_channels)
        points[:, 0] = float("nan")
        return points

    def forward(self, points: Tensor) -> Tensor:
        """``[B, N, 3 + F]`` -> ``[B, 3 + F, N]`` float32."""
        c = self.out_channels
        if points.ndim != 3 or points.shape[-1] != c or points.shape[1] < 1:
            raise ValueError(
                f"points input must be [B, N, {c}] (xyz in metres"
                f"{f' + {self.features} features' if self.features else ''}, N >= 1), "
                f"got {list(points.shape)}"
            )
        x = points.float()
        valid = torch.isfinite(x).all(-1, keepdim=True)  # [B, N, 1]
        x = torch.where(valid, x, torch.zeros_like(x))
        count = valid.sum(1, keepdim=True).clamp_min(1)  # [B, 1, 1]
        xyz = x[..., :3]
        centroid = (xyz * valid).sum(1, keepdim=True) / count
        xyz = (xyz - centroid) * valid
        radius = xyz.norm(dim=-1, keepdim=True).amax(1, keepdim=True)  # [B, 1, 1]
        xyz = xyz / torch.where(radius > 0, radius, torch.ones_like(radius))
        x = torch.cat([xyz, x[..., 3:]], -1)
        first = valid.squeeze(-1).to(torch.uint8).argmax(1)  # first valid point (0 if none)
        filler = x[torch.arange(len(x), device=x.device), first].unsqueeze(1)  # [B, 1, C]
        x = torch.where(valid, x, filler * valid.any(1, keepdim=True))
        return x.transpose(1, 2).contiguous()


@dataclass
class SequenceOptions:
    """Options of the ``sequence`` front end (checked when a config is loaded).

    Attributes:
        channels: ``C``, channels per time step (``paired`` sets it from its arrays).
        mean, std: per-channel standardisation constants in the data's own units: one value
            per channel, or one for all (checked against ``channels`` when the front end is
            built); empty: no shift (mean) or no scaling (std). ``paired`` sets both from its
            train split.
    """

    channels: int = 1
    mean: Annotated[list[float], AllowRepeats] = field(default_factory=list)
    std: Annotated[list[float], AllowRepeats] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(
            self,
            {
                "channels": at_least(1),
                "std": ((lambda v: all(s > 0 for s in v)), "a list of numbers > 0"),
            },
        )


@FRONTENDS.register("sequence")
class SequenceFrontend(nn.Module):
    """A multichannel sequence ``[B, C, T]`` -> ``[B, C, T]`` float32, standardised per channel.

    IMU, EMG, ECG, radar: channels first, in the data's own units, shifted by ``mean`` and
    scaled by ``std`` (per channel, or one for all). A missing sample (NaN or infinite) becomes
    0 after standardisation, i.e. the channel's mean. Any ``T`` works. A sound waveform with
    a sample rate is better served by ``audio`` (log-mel); see docs/sequences.md.

    Args:
        channels: ``C``. mean, std: per-channel constants (see :class:`SequenceOptions`).
    """

    image_aligned = False  # one column per time step, not per pixel: no dense image probes
    kind = "sequence"  # the modality named in messages
    layout = "sequence"  # [B, C, T]: needs a sequence backbone
    default_backbone = "temporal_conv"  # used when the configured backbone takes images
    options = SequenceOptions
    mean: Tensor  # [1, C or 1, 1] buffers, not saved with the weights (the options hold them)
    std: Tensor

    def __init__(
        self, channels: int = 1, mean: Sequence[float] = (), std: Sequence[float] = ()
    ) -> None:
        super().__init__()
        checked = SequenceOptions(channels, [float(m) for m in mean], [float(s) for s in std])
        for name, values in (("mean", checked.mean), ("std", checked.std)):
            if len(values) not in (0, 1, checked.channels):  # channels may come from the data
                raise ValueError(
                    f"{self.kind} front end: {name} has {len(values)} values; give one per "
                    f"channel (channels={checked.channels}), one for all, or none"
                )
        self.channels = self.out_channels = checked.channels
        shift = torch.tensor(checked.mean or [0.0], dtype=torch.float32)
        scale = torch.tensor(checked.std or [1.0], dtype=torch.float32)
        self.register_buffer("mean", shift.view(1, -1, 1), persistent=False)
        self.register_buffer("std", scale.view(1, -1, 1), persistent=False)

    def example_input(self, batch: int = 2) -> Tensor:
        """``[batch, C, 64]`` random steps, one missing (NaN) (for contract tests)."""
        x = torch.randn(batch, self.channels, 64)
        x[:, 0, 0] = float("nan")
        return x

    def forward(self, sequence: Tensor) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, T]`` float32; a non-finite value -> 0."""
        c = self.channels
        if sequence.ndim != 3 or sequence.shape[1] != c or sequence.shape[2] < 1:
            raise ValueError(
                f"{self.kind} input must be [B, C={c}, T >= 1] (channels first), "
                f"got {list(sequence.shape)}"
            )
        x = (sequence.float() - self.mean) / self.std
        return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


@FRONTENDS.register("accelerometer")
class AccelerometerFrontend(SequenceFrontend):
    """An accelerometer's axes ``[B, C, T]``, as ``sequence`` does (any units, e.g. m/s^2 or g).

    Its own name, so that a recording's accelerometer and gyroscope are two modalities of one
    ``paired`` manifest (a teacher and a student), each with its own channel statistics.
    """

    kind = "accelerometer"


@FRONTENDS.register("gyroscope")
class GyroscopeFrontend(SequenceFrontend):
    """A gyroscope's axes ``[B, C, T]`` (angular rate, any units), as ``sequence`` does.

    Its own name for the reason given in :class:`AccelerometerFrontend`.
    """

    kind = "gyroscope"
