"""The embedded ``scenes`` dataset as a registered dataset source (HDF5 cache -> splits)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import torch

from xmodal.core.registries import DATASETS
from xmodal.data.arrays import ArrayDataset
from xmodal.data.depth_encodings import Intrinsics
from xmodal.data.scenes import ScenesConfig, generate_scenes, read_scenes_info
from xmodal.data.scenes.points import scene_points
from xmodal.data.scenes.recipes import NUM_SEMANTIC_IDS
from xmodal.data.scenes.render import NO_HIT_ID
from xmodal.data.source import LoadedDataset

SPLITS = ("train", "val", "test")


def dense_semantic(semantic: torch.Tensor) -> torch.Tensor:
    """Rendered ids (0 floor, 1 wall, 2 + c objects, ``NO_HIT_ID`` nothing) -> segmentation
    labels in the probes' convention: ``id + 1`` (1..NUM_SEMANTIC_IDS), 0 = unlabeled."""
    labels = semantic.long() + 1
    return torch.where(semantic == NO_HIT_ID, torch.zeros_like(labels), labels)


@DATASETS.register("scenes")
class ScenesSource:
    """Procedural tri-modal scenes (RGB, metric depth, audio), generated locally, no download;
    scene classes for the linear probe and per-pixel ``semantic`` labels (floor, wall, six
    object categories) for the segmentation probe.

    A fourth modality, ``points`` (``[num_points, 3]`` xyz in metres per sample), is the depth
    map back-projected with the camera's intrinsics, sampled when the cache is loaded."""

    name = "scenes"
    modalities = ("rgb", "depth", "audio", "points")
    options_type = ScenesConfig

    def prepare(self, options: ScenesConfig, cache_path: Path,
                progress: Callable[[int, int], None] | None = None) -> Path:
        return generate_scenes(cache_path, options, progress=progress)

    def load(self, cache_path: Path) -> LoadedDataset:
        info = read_scenes_info(cache_path)  # one clear error for a missing/corrupt cache
        options = ScenesConfig(**{k: v for k, v in info["config"].items()
                                  if k in ScenesConfig.__dataclass_fields__})
        camera = Intrinsics(**info["intrinsics"])

        def points(depth: torch.Tensor, split: str) -> torch.Tensor:
            return torch.from_numpy(scene_points(depth.numpy(), camera, options.num_points,
                                                 options.seed, split))

        with h5py.File(cache_path, "r") as f:
            depths = {split: torch.from_numpy(f[split]["depth"][()]) for split in SPLITS}
            splits = {
                split: ArrayDataset({
                    "rgb": torch.from_numpy(f[split]["rgb"][()]),
                    "depth": depths[split],
                    "audio": torch.from_numpy(f[split]["audio"][()]),
                    "points": points(depths[split], split),
                    "label": torch.from_numpy(f[split]["label"][()]).long(),
                    "semantic": dense_semantic(torch.from_numpy(f[split]["semantic"][()])),
                })
                for split in SPLITS
            }
            classes = json.loads(f.attrs["classes"])
            sample_rate = int(f.attrs["sample_rate"])
        return LoadedDataset(splits=splits, num_classes=len(classes), class_names=classes,
                             frontend_kwargs={"audio": {"sample_rate": sample_rate}},
                             dense_labels={"semantic": NUM_SEMANTIC_IDS})
