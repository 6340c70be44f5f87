"""NYU-Depth V2 (labeled set) as a registered dataset source: ``nyu-depth``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from xmodal.core.errors import DataError
from xmodal.core.registry import DATASETS
from xmodal.data.arrays import SplitData
from xmodal.data.hdf5_split import HDF5Split, Transform, as_long
from xmodal.data.nyu.cache import CACHE_FORMAT, build_cache, require_source, source_fingerprint
from xmodal.data.nyu.config import NYUDepthConfig
from xmodal.data.nyu.facts import load_nyu_facts
from xmodal.data.source import LoadedDataset

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class _Relabel:
    """Per-pixel labels through a look-up table (NYU's 40 classes -> 13), picklable."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def __call__(self, labels: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return self.table[labels.long()].long()


@DATASETS.register("nyu-depth")
class NYUDepthSource:
    """NYU-Depth V2 labeled frames: RGB, metric depth, surface normals, HHA.

    10 scene classes; 40/13-class per-pixel labels (``seg40``/``seg13``, 0 = unlabeled).
    """

    name = "nyu-depth"
    modalities = ("rgb", "depth", "normals", "hha")
    options = NYUDepthConfig

    def prepare(
        self,
        options: NYUDepthConfig,
        cache_path: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Convert the labeled ``.mat`` file into the HDF5 cache at ``cache_path`` (resumable)."""
        return build_cache(options, cache_path, progress)

    def fingerprint(self, options: NYUDepthConfig) -> dict[str, object]:
        """Size, mtime and end-hash of the labeled file (part of the data unit's cache key)."""
        return source_fingerprint(require_source(options))

    def load(self, cache_path: Path) -> LoadedDataset:
        """The official train/val/test frames streamed from the cache, with both label sets."""
        facts = load_nyu_facts()
        lut13 = torch.tensor(np.array(facts.map40to13), dtype=torch.uint8)
        try:
            with h5py.File(cache_path, "r") as f:
                if json.loads(f.attrs["manifest"]).get("format") != CACHE_FORMAT:
                    raise KeyError("manifest")
                split_codes = f["split"][()]  # one byte per frame: the only array read whole
                classes = json.loads(f.attrs["scene10_names"])
        except (OSError, KeyError) as exc:
            raise DataError(
                f"NYU cache '{cache_path}' is unreadable or incomplete ({exc}); delete "
                "it and rerun preprocessing"
            ) from None
        columns = {
            "rgb": "rgb",
            "depth": "depth",
            "normals": "normals",
            "hha": "hha",
            "label": "scene10",
            "seg40": "labels40",
            "seg13": "labels40",
        }
        transforms: dict[str, Transform] = {
            "label": as_long,
            "seg40": as_long,
            "seg13": _Relabel(lut13),
        }
        splits: dict[str, SplitData] = {
            name: HDF5Split(
                cache_path, columns, rows=np.flatnonzero(split_codes == code), transforms=transforms
            )  # streamed, a batch of frames at a time
            for name, code in SPLIT_CODES.items()
        }
        return LoadedDataset(
            splits=splits,
            num_classes=len(classes),
            class_names=classes,
            dense_labels={"seg40": 40, "seg13": 13},
        )
