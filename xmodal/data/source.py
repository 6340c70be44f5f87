"""What a registered dataset provides: preparation into a cache, and loading of its splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from xmodal.data.arrays import ArrayDataset


@dataclass
class LoadedDataset:
    """Splits of a prepared dataset, in memory.

    Attributes:
        splits: ``{"train"|"val"|"test": ArrayDataset}``; each holds one tensor per modality
            plus ``label`` (``[N]`` long).
        num_classes: number of scene classes.
        class_names: their names, index = label.
        frontend_kwargs: per-modality keyword arguments for the encoder front ends (e.g. the
            audio sample rate in Hz).
        dense_labels: per-pixel label keys in the splits and their class counts (labels
            ``1..C``, 0 = unlabeled), e.g. ``{"seg40": 40}``, for dense probes.
    """

    splits: dict[str, ArrayDataset]
    num_classes: int
    class_names: list[str]
    frontend_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense_labels: dict[str, int] = field(default_factory=dict)


class DatasetSource(Protocol):
    """A registered dataset (``xmodal.datasets`` entry point): modalities, preparation, loading."""

    name: str
    modalities: tuple[str, ...]

    def prepare(self, options: Any, cache_path: Path,
                progress: Callable[[int, int], None] | None = None) -> Path: ...

    def load(self, cache_path: Path) -> LoadedDataset: ...
