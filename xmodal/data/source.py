"""What a registered dataset provides: preparation into a cache, and loading of its splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from xmodal.data.arrays import SplitData


@dataclass
class LoadedDataset:
    """Splits of a prepared dataset, read from its cache as needed.

    Attributes:
        splits: ``{"train"|"val"|"test": SplitData}``, streamed from the cache
            (:class:`~xmodal.data.hdf5_split.HDF5Split`) or in memory; each has one column per modality
            plus ``label`` (``[N]`` long).
        num_classes: number of scene classes.
        class_names: their names, index = label.
        frontend_kwargs: per-modality keyword arguments for the encoder front ends (e.g. the
            audio sample rate in Hz).
        dense_labels: per-pixel label keys in the splits and their class counts (labels
            ``1..C``, 0 = unlabeled), e.g. ``{"seg40": 40}``, for dense probes.
        skipped_rows: source rows left out as bad (e.g. ``paired``'s manifest row numbers,
            from 1, with ``on_bad_sample=skip``); the report stores their count.
        notes: warnings about the data that an option allowed (e.g. ``paired``'s duplicate
            files with ``allow_duplicates``), one line each; printed when it is loaded.

    A dataset without labels has no ``label`` key in its splits, ``num_classes`` 0 and no
    ``class_names``.
    """

    splits: dict[str, SplitData]
    num_classes: int
    class_names: list[str]
    frontend_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense_labels: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class DatasetSource(Protocol):
    """A registered dataset (``xmodal.datasets`` entry point): modalities, preparation, loading.

    ``prepare`` reports ``progress(done, total)``, and may pass rich task fields such as
    ``description="validate paired"`` to name a phase. A source whose modalities or labels
    depend on its options (a manifest's columns) also has ``modalities_for(options)`` and
    ``labelled_for(options)``; read them through :func:`dataset_modalities` and
    :func:`dataset_labelled`.
    """

    name: str
    modalities: tuple[str, ...]

    def prepare(
        self, options: Any, cache_path: Path, progress: Callable[..., None] | None = None
    ) -> Path: ...

    def load(self, cache_path: Path) -> LoadedDataset: ...


def _instance(source: Any) -> Any:
    return source() if isinstance(source, type) else source


def dataset_modalities(source: Any, options: Any) -> tuple[str, ...]:
    """The modalities ``source`` (a registered dataset class or instance) serves with
    ``options``: its ``modalities_for(options)`` when it has one, else its ``modalities``;
    empty = not known yet (nothing is checked against it).
    """
    if options is not None and hasattr(source, "modalities_for"):
        return tuple(_instance(source).modalities_for(options))
    return tuple(getattr(source, "modalities", ()))


def dataset_labelled(source: Any, options: Any) -> bool:
    """Whether ``source`` with ``options`` has labels: its ``labelled_for(options)`` when it has
    one, else its ``labelled`` attribute (default True).
    """
    if options is not None and hasattr(source, "labelled_for"):
        return bool(_instance(source).labelled_for(options))
    return bool(getattr(source, "labelled", True))
