"""Modality front ends: raw sensor tensors in physical units -> normalised network input.

Each front end is registered under its modality name and tells the backbone how many input
channels it produces. Keeping this step inside the encoder means checkpoints carry their own
normalisation and users feed data in its natural units (uint8 RGB, metres, waveform samples).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

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
    """RGB image ``[B, H, W, 3]`` (uint8 0..255 or float 0..1) -> ``[B, 3, H, W]``, ImageNet-normalised."""

    image_aligned = True  # feature maps are aligned with image pixels
    out_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def example_input(self, batch: int = 2) -> Tensor:
        """A random ``[batch, 16, 16, 3]`` uint8 image (for contract tests)."""
        return torch.randint(0, 256, (batch, 16, 16, 3), dtype=torch.uint8)

    def forward(self, image: Tensor) -> Tensor:
        x = channels_first(image, "rgb")
        if image.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std


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
        if depth.ndim != 3:
            raise ValueError(f"depth input must be [B, H, W] in metres, got {list(depth.shape)}")
        d = depth.float()
        valid = torch.isfinite(d) & (d > 0)
        x = (d.clamp(0.0, self.max_m) - self.mean_m) / self.std_m
        return torch.where(valid, x, torch.zeros_like(x)).unsqueeze(1)


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

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 128,
                 n_mels: int = 32) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
            f_min=20.0, f_max=sample_rate / 2, power=2.0,
        )

    def example_input(self, batch: int = 2) -> Tensor:
        """``[batch, 2048]`` random samples in [-1, 1] (for contract tests)."""
        return torch.rand(batch, 2048) * 2 - 1

    def forward(self, wave: Tensor) -> Tensor:
        if wave.ndim != 2:
            raise ValueError(f"audio input must be [B, T] samples, got {list(wave.shape)}")
        with torch.autocast(wave.device.type, enabled=False):  # FFT in float32
            logmel = torch.log(self.mel(wave.float()) + 1e-6)
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True).clamp_min(1e-3)
        return ((logmel - mean) / std).unsqueeze(1)


@FRONTENDS.register("hha")
class HHAFrontend(nn.Module):
    """HHA depth encoding ``[B, H, W, 3]`` uint8 (disparity, height above ground, angle with
    gravity; Gupta et al. 2014) -> ``[B, 3, H, W]`` scaled to about [-2, 2].

    Same layout as RGB, so ImageNet-initialised backbones take it without changes.
    """

    image_aligned = True  # feature maps are aligned with image pixels
    out_channels = 3

    def example_input(self, batch: int = 2) -> Tensor:
        """A random ``[batch, 16, 16, 3]`` uint8 HHA image (for contract tests)."""
        return torch.randint(0, 256, (batch, 16, 16, 3), dtype=torch.uint8)

    def forward(self, image: Tensor) -> Tensor:
        return (channels_first(image, "hha") / 255.0 - 0.5) / 0.25


@FRONTENDS.register("normals")
class NormalsFrontend(nn.Module):
    """Surface normals ``[B, H, W, 3]`` in the camera frame (unit floats, or int8 = 127 x unit
    as cached for NYU; 0 = unknown) -> ``[B, 3, H, W]`` with components in [-1, 1]."""

    image_aligned = True  # feature maps are aligned with image pixels
    mirror_negates_channel = 0  # a left-right mirror flips the sign of n_x
    out_channels = 3

    def example_input(self, batch: int = 2) -> Tensor:
        """Random unit normals ``[batch, 16, 16, 3]`` (for contract tests)."""
        return torch.nn.functional.normalize(torch.randn(batch, 16, 16, 3), dim=-1)

    def forward(self, normals: Tensor) -> Tensor:
        x = channels_first(normals, "normals")
        if normals.dtype == torch.int8:
            x = x / 127.0
        return torch.nan_to_num(x, nan=0.0)
