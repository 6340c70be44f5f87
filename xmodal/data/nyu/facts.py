"""NYU-Depth V2 facts shipped as data: splits, class maps, scene classes, camera.

The JSON files under ``datasets/nyu-depth-v2/`` are generated from the public metadata by
``scripts/make_nyu_meta.py``; this module only reads them (once, cached) and offers the
lookups every NYU pipeline needs. Label maps are look-up tables indexed by the source label,
so index 0 (unlabeled) always maps to 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.errors import DataError
from xmodal.core.resources import resource_path

FACTS_DIR = "nyu-depth-v2"


def _frozen(values: Any, dtype: type) -> np.ndarray:
    """A read-only array: the facts are shared by every caller through the cache."""
    array: np.ndarray = np.asarray(values, dtype=dtype)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class NYUFacts:
    """Everything about NYU-Depth V2 that is not inside the labeled ``.mat`` file.

    Attributes:
        train_indices: official 795 train frames, 0-based indices into the 1449 labeled frames.
        test_indices: official 654 test frames, 0-based; disjoint from the train frames.
        map894to40: ``[895]`` int look-up table, ``label40 = map894to40[label894]``; 0 -> 0.
        names40: the 40 class names; class ``k`` (1..40) is ``names40[k - 1]``.
        map40to13: ``[41]`` int look-up table, ``label13 = map40to13[label40]``; 0 -> 0.
        names13: the 13 class names; class ``k`` (1..13) is ``names13[k - 1]``.
        scene_types: the 27 ``sceneTypes`` values as spelled in the data (``excercise_room``).
        scene10_names: the 10 scene classes; the last, ``others``, pools 18 rare types.
        scene_to_10: scene type -> index into ``scene10_names``.
        intrinsics: RGB ``(fx, fy, cx, cy)`` in pixels, principal point on the 0-based grid.
        valid_crop: non-padded region ``(top, bottom, left, right)``, 0-based inclusive pixels.
        image_size: ``(height, width)`` of the labeled frames in pixels, ``(480, 640)``.
    """

    train_indices: np.ndarray
    test_indices: np.ndarray
    map894to40: np.ndarray
    names40: tuple[str, ...]
    map40to13: np.ndarray
    names13: tuple[str, ...]
    scene_types: tuple[str, ...]
    scene10_names: tuple[str, ...]
    scene_to_10: dict[str, int]
    intrinsics: tuple[float, float, float, float]
    valid_crop: tuple[int, int, int, int]
    image_size: tuple[int, int]

    def labels40(self, label894: np.ndarray) -> np.ndarray:
        """``[...]`` labels in 0..894 -> the same shape in 0..40 (uint8; 0 = unlabeled)."""
        return _lookup(self.map894to40, label894, "894-class")

    def labels13(self, label40: np.ndarray) -> np.ndarray:
        """``[...]`` labels in 0..40 -> the same shape in 0..13 (uint8; 0 = unlabeled)."""
        return _lookup(self.map40to13, label40, "40-class")

    def scene10(self, scene_type: str) -> int:
        """A ``sceneTypes`` string (e.g. ``"bedroom"``) -> its 10-class index (0..9)."""
        try:
            return self.scene_to_10[scene_type]
        except KeyError:
            raise DataError(
                f"unknown NYU scene type {scene_type!r}: not one of the {len(self.scene_types)} "
                f"types in datasets/{FACTS_DIR}/scenes10.json (key 'scene_types'); check the "
                "file's sceneTypes or add the type there with scripts/make_nyu_meta.py"
            ) from None


def _lookup(table: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(table)):
        # Out-of-range labels mean a corrupt or foreign label array, not a bug here.
        raise DataError(
            f"{kind} labels must lie in 0..{len(table) - 1}, found values in "
            f"{labels.min()}..{labels.max()}; check the label array's source file"
        )
    return table[labels.astype(np.intp, copy=False)].astype(np.uint8)


def _read(name: str) -> dict[str, Any]:
    path: Path = resource_path("datasets", f"{FACTS_DIR}/{name}")
    try:
        facts: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return facts
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"'{path}' is unreadable ({exc}); reinstall xmodal or regenerate it with "
            "scripts/make_nyu_meta.py"
        ) from None


def _need(data: dict[str, Any], name: str, key: str, length: int | None = None) -> Any:
    """``data[key]``, checked for presence (and length): a hand-edited file fails here, clearly."""
    where = f"datasets/{FACTS_DIR}/{name}"
    if key not in data:
        raise DataError(
            f"'{where}' has no key '{key}'; regenerate it with scripts/make_nyu_meta.py"
        )
    value = data[key]
    if length is not None and len(value) != length:
        raise DataError(
            f"'{where}' key '{key}' has {len(value)} entries, expected {length}; "
            "regenerate it with scripts/make_nyu_meta.py"
        )
    return value


@lru_cache(maxsize=1)
def load_nyu_facts() -> NYUFacts:
    """Read the shipped NYU facts (once per process)."""
    splits, c40, c13 = _read("splits.json"), _read("classes40.json"), _read("classes13.json")
    scenes, camera = _read("scenes10.json"), _read("camera.json")
    scene10_names = tuple(_need(scenes, "scenes10.json", "scene10_names", 10))
    to_name = _need(scenes, "scenes10.json", "scene_to_10")
    intr = _need(camera, "camera.json", "intrinsics")
    crop = _need(camera, "camera.json", "valid_crop")
    return NYUFacts(
        train_indices=_frozen(_need(splits, "splits.json", "train", 795), np.int64),
        test_indices=_frozen(_need(splits, "splits.json", "test", 654), np.int64),
        map894to40=_frozen(_need(c40, "classes40.json", "map894to40", 895), np.int64),
        names40=tuple(_need(c40, "classes40.json", "names40", 40)),
        map40to13=_frozen(_need(c13, "classes13.json", "map40to13", 41), np.int64),
        names13=tuple(_need(c13, "classes13.json", "names13", 13)),
        scene_types=tuple(_need(scenes, "scenes10.json", "scene_types", 27)),
        scene10_names=scene10_names,
        scene_to_10={t: scene10_names.index(c) for t, c in to_name.items()},
        intrinsics=(float(intr["fx"]), float(intr["fy"]), float(intr["cx"]), float(intr["cy"])),
        valid_crop=(int(crop["top"]), int(crop["bottom"]), int(crop["left"]), int(crop["right"])),
        image_size=tuple(_need(camera, "camera.json", "image_size", 2)),
    )


def labels40(label894: np.ndarray) -> np.ndarray:
    """``[...]`` NYU labels (0..894) -> 40-class labels (0..40, uint8); 0 = unlabeled."""
    return load_nyu_facts().labels40(label894)


def labels13(label40: np.ndarray) -> np.ndarray:
    """``[...]`` 40-class labels (0..40) -> 13-class labels (0..13, uint8); 0 = unlabeled."""
    return load_nyu_facts().labels13(label40)


def scene10(scene_type: str) -> int:
    """A scene type as spelled in the data -> 10-class scene index; unknown -> DataError."""
    return load_nyu_facts().scene10(scene_type)
