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
from xmodal.data.nyu.config import NYUDepthOptions
from xmodal.data.nyu.facts import load_nyu_facts
from xmodal.data.source import LoadedDataset, Section, human_bytes

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
    options = NYUDepthOptions

    def prepare(
        self,
        options: NYUDepthOptions,
        cache_path: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Convert the labeled ``.mat`` file into the HDF5 cache at ``cache_path`` (resumable)."""
        return build_cache(options, cache_path, progress)

    def fingerprint(self, options: NYUDepthOptions) -> dict[str, object]:
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

    def describe_file(
        self,
        path: Path,
        options: NYUDepthOptions,
        progress: Callable[..., None] | None = None,
    ) -> list[Section] | None:
        """Describe the labeled file, for ``xmodal data info``.

        Frames, image size, the official split and the scene types with counts; None for any
        other file.
        """
        from collections import Counter

        from xmodal.core.resources import resource_path
        from xmodal.data.nyu.reader import NYULabeledFile, validate

        try:
            with h5py.File(path, "r") as f:
                if not ("images" in f and "depths" in f):
                    return None
        except OSError:  # not HDF5, or unreadable: the next dataset (or data info) says which
            return None
        info = validate(path)
        with NYULabeledFile(path) as nyu:
            scene_types = nyu.scene_types()
        frames = info["frames"]
        splits = json.loads(resource_path("datasets", "nyu-depth-v2/splits.json").read_text())
        problems = []
        if frames == splits["num_frames"]:
            split_text = f"official: {len(splits['train'])} train, {len(splits['test'])} test"
        else:
            split_text = "none (the official split needs all 1449 frames)"
            problems.append(
                f"{frames} frames, not the full labeled set's {splits['num_frames']}: "
                "a subset or a different file"
            )
        facts = load_nyu_facts()
        known = facts.scene_to_10
        unknown = sorted(set(scene_types) - set(known))
        if unknown:
            problems.append(f"scene types without a 10-class mapping: {', '.join(unknown)}")
        overview = [
            ["file", str(path)],
            ["format", "NYU-Depth V2 labeled set (MATLAB v7.3)"],
            ["size", human_bytes(info["file_size"])],
            ["frames", str(frames)],
            ["image size", f"{info['width']} x {info['height']} pixels (W x H)"],
            ["splits", split_text],
            ["scene types", f"{len(set(scene_types))} types"],
            ["problems", "; ".join(problems) or "none found"],
        ]
        counts = Counter(scene_types)
        scenes = [
            [
                name,
                str(count),
                f"{100 * count / frames:.1f}%",
                facts.scene10_names[known[name]] if name in known else "?",
            ]
            for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        arrays = [
            [key, " x ".join(map(str, reversed(v["shape"]))), v["dtype"]]
            for key, v in info["keys"].items()
        ]
        return [
            ("NYU-Depth V2 labeled file", ["", ""], overview),
            ("scene types", ["scene type", "frames", "share", "10-class scene"], scenes),
            ("arrays (MATLAB order)", ["key", "shape", "dtype"], arrays),
        ]
