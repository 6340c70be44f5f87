"""The embedded ``scenes`` dataset as a registered dataset source (HDF5 cache -> splits)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from xmodal.core.registry import DATASETS
from xmodal.data.arrays import SplitData
from xmodal.data.depth_encodings import Intrinsics
from xmodal.data.hdf5_split import HDF5Split, Transform, as_long
from xmodal.data.scenes import ScenesOptions, generate_scenes, read_scenes_info
from xmodal.data.scenes.points import scene_points
from xmodal.data.scenes.recipes import CATEGORIES, NUM_SEMANTIC_IDS, OBJECT_ID_OFFSET
from xmodal.data.scenes.render import NO_HIT_ID
from xmodal.data.source import LoadedDataset, Section, human_bytes

SPLITS = ("train", "val", "test")

#: seed offset of the teacher's own generated set (``teacher.task=transfer``): its scenes share
#: no sample with the distillation data, which draws from ``seed``
TEACHER_TASK_SEED_OFFSET = 7_919


def dominant_object(semantic: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """Rendered label maps ``[n, H, W]`` -> the object category covering the most pixels.

    ``[n]`` long, 0..5; ties go to the lower category; a map without objects gives 0.
    """
    flat = semantic.long().reshape(semantic.shape[0], -1) - OBJECT_ID_OFFSET
    inside = (flat >= 0) & (flat < len(CATEGORIES))
    counts = torch.zeros(flat.shape[0], len(CATEGORIES), dtype=torch.long)
    counts.scatter_add_(1, flat.clamp(0, len(CATEGORIES) - 1), inside.long())
    return counts.argmax(1)


def dense_semantic(semantic: torch.Tensor) -> torch.Tensor:
    """Rendered ids -> segmentation labels in the probes' convention.

    Ids are 0 floor, 1 wall, 2 + c objects, ``NO_HIT_ID`` nothing; labels are ``id + 1``
    (1..NUM_SEMANTIC_IDS), 0 = unlabeled.
    """
    labels = semantic.long() + 1
    return torch.where(semantic == NO_HIT_ID, torch.zeros_like(labels), labels)


def _dense_semantic_rows(semantic: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    return dense_semantic(semantic)


class _ScenePoints:
    """Depth rows -> their point clouds ``[n, num_points, 3]``, each seeded by its index."""

    def __init__(self, camera: Intrinsics, num_points: int, seed: int, split: str) -> None:
        self.camera, self.num_points, self.seed, self.split = camera, num_points, seed, split

    def __call__(self, depth: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(
            scene_points(
                depth.numpy(), self.camera, self.num_points, self.seed, self.split, indices=rows
            )
        )


@DATASETS.register("scenes")
class ScenesSource:
    """Procedural tri-modal scenes (RGB, metric depth, audio), generated locally, no download.

    Scene classes for the linear probe and per-pixel ``semantic`` labels (floor, wall, six
    object categories) for the segmentation probe.

    A fourth modality, ``points`` (``[num_points, 3]`` xyz in metres per sample), is the depth
    map back-projected with the camera's intrinsics, sampled as each batch is read.
    """

    name = "scenes"
    modalities = ("rgb", "depth", "audio", "points")
    options = ScenesOptions

    def prepare(
        self,
        options: ScenesOptions,
        cache_path: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Generate every split into the HDF5 file ``cache_path``."""
        return generate_scenes(cache_path, options, progress=progress)

    def teacher_task_options(self, options: ScenesOptions) -> ScenesOptions:
        """The options of the teacher's own set (``teacher.task=transfer``).

        New scenes (another seed) of the same generator, labelled by :meth:`load_teacher_task`.
        """
        return dataclasses.replace(options, seed=options.seed + TEACHER_TASK_SEED_OFFSET)

    def load_teacher_task(self, cache_path: Path) -> LoadedDataset:
        """The teacher's own set: RGB labelled by its dominant object category.

        6 classes, a label space apart from the scene classes that the students are probed on.
        """
        splits: dict[str, SplitData] = {}
        for split in SPLITS:
            splits[split] = HDF5Split(
                cache_path, {"rgb": f"{split}/rgb", "semantic": f"{split}/semantic"}
            )
            splits[split].derive("label", "semantic", dominant_object)
        return LoadedDataset(
            splits=splits, num_classes=len(CATEGORIES), class_names=list(CATEGORIES)
        )

    def load(self, cache_path: Path) -> LoadedDataset:
        """The splits streamed from the cache; ``points`` derived from depth as rows are read."""
        info = read_scenes_info(cache_path)  # one clear error for a missing/corrupt cache
        options = ScenesOptions(
            **{k: v for k, v in info["config"].items() if k in ScenesOptions.__dataclass_fields__}
        )
        camera = Intrinsics(**info["intrinsics"])
        transforms: dict[str, Transform] = {"label": as_long, "semantic": _dense_semantic_rows}
        splits: dict[str, SplitData] = {}
        for split in SPLITS:  # streamed: each batch reads its rows from the cache
            splits[split] = HDF5Split(
                cache_path,
                {key: f"{split}/{key}" for key in ("rgb", "depth", "audio", "label", "semantic")},
                transforms=transforms,
            )
            splits[split].derive(
                "points", "depth", _ScenePoints(camera, options.num_points, options.seed, split)
            )
        with h5py.File(cache_path, "r") as f:
            classes = json.loads(f.attrs["classes"])
            sample_rate = int(f.attrs["sample_rate"])
        return LoadedDataset(
            splits=splits,
            num_classes=len(classes),
            class_names=classes,
            frontend_kwargs={"audio": {"sample_rate": sample_rate}},
            dense_labels={"semantic": NUM_SEMANTIC_IDS},
        )

    def describe_file(
        self,
        path: Path,
        options: ScenesOptions,
        progress: Callable[..., None] | None = None,
    ) -> list[Section] | None:
        """Describe a scenes cache, for ``xmodal data info``.

        Splits, image and audio sizes, modalities and the scene classes per split; None for any
        other file.
        """
        from collections import Counter

        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != "xmodal-scenes":
                    return None
        except OSError:  # not HDF5, or unreadable: the next dataset (or data info) says which
            return None
        info = read_scenes_info(path)
        classes = list(info["classes"])
        counts: dict[str, Counter[int]] = {}
        shapes: dict[str, str] = {}
        with h5py.File(path, "r") as f:
            for split in info["splits"]:
                counts[split] = Counter(int(v) for v in f[split]["label"][()])
                for key, array in f[split].items():
                    shapes.setdefault(
                        key, f"{' x '.join(map(str, array.shape[1:])) or 'scalar'} {array.dtype}"
                    )
        size = int(info["image_size"])
        num_points = int(info["config"].get("num_points", ScenesOptions.num_points))
        overview = [
            ["file", str(path)],
            ["format", f"xmodal scenes cache, version {info['version']}"],
            ["size", human_bytes(path.stat().st_size)],
            ["rows", ", ".join(f"{n} {s}" for s, n in info["splits"].items())],
            ["image size", f"{size} x {size} pixels"],
            ["audio", f"{int(info['audio_length'])} samples at {int(info['sample_rate'])} Hz"],
            [
                "modalities",
                ", ".join(
                    f"{k} ({v})"
                    for k, v in shapes.items()
                    if k not in ("label", "num_objects", "semantic")
                )
                + f", points ({num_points} x 3 float32, from depth at load)",
            ],
            [
                "labels",
                f"scene class per row ({len(classes)} classes)"
                + (", per-pixel classes" if "semantic" in shapes else ""),
            ],
        ]
        splits = list(counts)
        rows = [[name, *(str(counts[s][i]) for s in splits)] for i, name in enumerate(classes)]
        empty = [
            f"class '{classes[i]}' has no {s} rows"
            for s in splits
            for i in range(len(classes))
            if counts[s][i] == 0
        ]
        overview.append(["problems", "; ".join(empty) or "none found"])
        return [
            ("scenes dataset cache", ["", ""], overview),
            ("scene classes per split", ["class", *splits], rows),
        ]
