"""The ``imu-synth`` dataset: tiny synthetic RGB + IMU pairs of three activities."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xmodal.core.checks import at_least, require
from xmodal.data.arrays import ArrayDataset
from xmodal.data.source import LoadedDataset

ACTIVITIES = ("still", "walk", "run")
HERTZ = 50.0  # IMU samples per second


@dataclass
class SynthOptions:
    """Options of ``imu-synth`` (``data.imu_synth``), checked when the config loads.

    Attributes:
        per_class: samples of each activity in each split (train, val, test).
        steps: IMU steps per window (``T``, at 50 Hz).
        seed: seeds the data.
    """

    per_class: int = 24
    steps: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        require(self, {"per_class": at_least(1), "steps": at_least(1), "seed": at_least(0)})


def _pairs(n: int, steps: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` of each activity: rgb ``[N, 16, 16, 3]`` uint8, imu ``[N, 6, T]``, label ``[N]``."""
    label = torch.arange(len(ACTIVITIES)).repeat_interleave(n)
    hz, amp = torch.tensor([0.0, 1.8, 2.8])[label], torch.tensor([0.1, 3.0, 8.0])[label]
    t = torch.arange(steps) / HERTZ
    phase = 2 * math.pi * torch.rand(len(label), 1, generator=g)
    wave = torch.sin(2 * math.pi * hz[:, None] * t + phase) * amp[:, None]  # [N, T]
    imu = 0.2 * torch.randn(len(label), 6, steps, generator=g)
    imu[:, 2] += 9.80665 + wave
    imu[:, 3] += wave / 4
    tint = torch.eye(3)[label][:, None, None, :] * 160 + 40  # one colour per activity
    rgb = tint + 30 * torch.randn(len(label), 16, 16, 3, generator=g)
    return {"rgb": rgb.clamp(0, 255).to(torch.uint8), "imu": imu, "label": label}


class SyntheticImu:
    """Synthetic wrist IMU windows paired with RGB frames of three activities (still, walk, run)."""

    name = "imu-synth"
    modalities = ("rgb", "imu")
    options = SynthOptions
    example_options: dict[str, Any] = {"per_class": 2, "steps": 16}  # for `xmodal check`

    def prepare(
        self, options: SynthOptions, cache_path: Path, progress: Callable[..., None] | None = None
    ) -> Path:
        """Generate the three splits into ``cache_path`` (one ``torch.save`` file)."""
        g = torch.Generator().manual_seed(options.seed)
        splits = {s: _pairs(options.per_class, options.steps, g) for s in ("train", "val", "test")}
        torch.save(splits, cache_path)
        if progress is not None:
            progress(1, 1)
        return cache_path

    def load(self, cache_path: Path) -> LoadedDataset:
        """The splits, in memory."""
        splits = torch.load(cache_path, weights_only=True)
        return LoadedDataset(
            splits={name: ArrayDataset(tensors) for name, tensors in splits.items()},
            num_classes=len(ACTIVITIES),
            class_names=list(ACTIVITIES),
        )
