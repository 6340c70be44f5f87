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
from xmodal.data.arrays import ArrayDataset
from xmodal.data.nyu.cache import (
    CACHE_FORMAT,
    NYUDepthConfig,
    build_cache,
    require_source,
    source_fingerprint,
)
from xmodal.data.nyu.facts import load_nyu_facts
from xmodal.data.source import LoadedDataset

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@DATASETS.register("nyu-depth")
class NYUDepthSource:
    """NYU-Depth V2 labeled frames: RGB, metric depth, surface normals, HHA; 10 scene classes;
    40/13-class per-pixel labels (``seg40``/``seg13``, 0 = unlabeled)."""

    name = "nyu-depth"
    modalities = ("rgb", "depth", "normals", "hha")
    options = NYUDepthConfig

    def prepare(self, options: NYUDepthConfig, cache_path: Path,
                progress: Callable[[int, int], None] | None = None) -> Path:
        return build_cache(options, cache_path, progress)

    def fingerprint(self, options: NYUDepthConfig) -> dict[str, object]:
        """Size, mtime and end-hash of the labeled file (part of the data unit's cache key)."""
        return source_fingerprint(require_source(options))

    def load(self, cache_path: Path) -> LoadedDataset:
        facts = load_nyu_facts()
        lut13 = torch.tensor(np.array(facts.map40to13), dtype=torch.uint8)
        try:
            with h5py.File(cache_path, "r") as f:
                if json.loads(f.attrs["manifest"]).get("format") != CACHE_FORMAT:
                    raise KeyError("manifest")
                arrays = {k: torch.from_numpy(f[k][()]) for k in
                          ("rgb", "depth", "normals", "hha", "labels40", "scene10", "split")}
                classes = json.loads(f.attrs["scene10_names"])
        except (OSError, KeyError) as exc:
            raise DataError(f"NYU cache '{cache_path}' is unreadable or incomplete ({exc}); delete "
                            "it and rerun preprocessing") from None
        splits = {}
        for name, code in SPLIT_CODES.items():
            keep = arrays["split"] == code
            seg40 = arrays["labels40"][keep]
            splits[name] = ArrayDataset({
                "rgb": arrays["rgb"][keep], "depth": arrays["depth"][keep],
                "normals": arrays["normals"][keep], "hha": arrays["hha"][keep],
                "label": arrays["scene10"][keep].long(),
                "seg40": seg40.long(), "seg13": lut13[seg40.long()].long(),
            })
        return LoadedDataset(splits=splits, num_classes=len(classes), class_names=classes,
                             dense_labels={"seg40": 40, "seg13": 13})
