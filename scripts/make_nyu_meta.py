"""Regenerate ``datasets/nyu-depth-v2/*.json`` from the public NYU-Depth V2 metadata files.

    python3 scripts/make_nyu_meta.py /path/to/nyu-meta [--out datasets/nyu-depth-v2]

The metadata folder holds ``splits.mat``, ``classMapping40.mat`` and ``class13Mapping.mat``
(MATLAB v5). The scene types and camera facts are not in those files: they come from the
dataset's documentation and the labeled file's ``sceneTypes``, and are written out here.
xmodal reads only the JSON at run time, never the metadata folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "datasets" / "nyu-depth-v2"

# The 27 values of ``sceneTypes`` in nyu_depth_v2_labeled.mat, spelled as in the data
# (``excercise_room`` is misspelt there; keep it so lookups match).
SCENE_TYPES = (
    "basement",
    "bathroom",
    "bedroom",
    "bookstore",
    "cafe",
    "classroom",
    "computer_lab",
    "conference_room",
    "dinette",
    "dining_room",
    "excercise_room",
    "foyer",
    "furniture_store",
    "home_office",
    "home_storage",
    "indoor_balcony",
    "kitchen",
    "laundry_room",
    "living_room",
    "office",
    "office_kitchen",
    "playroom",
    "printer_room",
    "reception_room",
    "student_lounge",
    "study",
    "study_room",
)
# The common 10-class scene benchmark: nine frequent types kept, the other 18 pooled.
SCENE10_NAMES = (
    "bedroom",
    "kitchen",
    "living_room",
    "bathroom",
    "dining_room",
    "office",
    "home_office",
    "classroom",
    "bookstore",
    "others",
)

# RGB camera (the labeled set's depth is registered to it), as published: 1-based pixel grid.
INTRINSICS_1BASED = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
IMAGE_SIZE = (480, 640)
VALID_CROP = {"top": 44, "bottom": 470, "left": 40, "right": 600}  # 0-based, inclusive


def _strings(cells: np.ndarray) -> list[str]:
    """A MATLAB v5 cell row of char arrays -> Python strings."""
    return [str(np.asarray(c).ravel()[0]) if np.asarray(c).size else "" for c in cells.ravel()]


def splits(meta: Path) -> dict[str, Any]:
    """The official 795/654 train/test split, 0-based frame indices (``splits.json``)."""
    mat = scipy.io.loadmat(meta / "splits.mat")
    # scipy gives uint16: cast to int before subtracting so nothing wraps.
    train = [int(i) - 1 for i in mat["trainNdxs"].ravel()]
    test = [int(i) - 1 for i in mat["testNdxs"].ravel()]
    assert len(train) == 795 and len(test) == 654, (len(train), len(test))
    assert sorted(train + test) == list(range(1449)), "splits must partition the 1449 frames"
    return {
        "note": "Official NYU-Depth V2 split of the 1449 labeled frames. Indices here are 0-based "
        "(frame i = images[i] in h5py); splits.mat (trainNdxs, testNdxs) is 1-based.",
        "source": "splits.mat",
        "num_frames": 1449,
        "train": train,
        "test": test,
    }


def classes40(meta: Path) -> dict[str, Any]:
    """The 894 -> 40 class map and the 40 class names (``classes40.json``)."""
    mat = scipy.io.loadmat(meta / "classMapping40.mat")
    mapping = [int(v) for v in mat["mapClass"].ravel()]
    names = _strings(mat["className"])
    assert len(mapping) == 894 and min(mapping) >= 1 and max(mapping) <= 40
    assert len(names) == 40
    return {
        "note": "map894to40[label894] is the 40-class label; index 0 (unlabeled) maps to 0. "
        "names40[k - 1] names class k (1..40).",
        "source": "classMapping40.mat (mapClass, className)",
        "map894to40": [0] + mapping,
        "names40": names,
    }


def classes13(meta: Path) -> dict[str, Any]:
    """The 40 -> 13 class map and the 13 class names (``classes13.json``)."""
    mat = scipy.io.loadmat(meta / "class13Mapping.mat")
    struct = mat["classMapping13"][0, 0]
    mapping = [int(v) for v in np.asarray(struct["labels13"]).ravel()]
    names = _strings(np.asarray(struct["classNames"]))
    assert len(mapping) == 40 and min(mapping) >= 1 and max(mapping) <= 13
    assert len(names) == 13
    return {
        "note": "map40to13[label40] is the 13-class label; index 0 (unlabeled) maps to 0. "
        "names13[k - 1] names class k (1..13).",
        "source": "class13Mapping.mat (classMapping13.labels13, classMapping13.classNames)",
        "map40to13": [0] + mapping,
        "names13": names,
    }


def scenes10() -> dict[str, Any]:
    """The 27 scene types mapped to the 10-class scene benchmark (``scenes10.json``)."""
    assert len(SCENE_TYPES) == 27 and len(set(SCENE_TYPES)) == 27
    kept = set(SCENE10_NAMES[:-1])
    assert kept <= set(SCENE_TYPES)
    mapping = {t: (t if t in kept else "others") for t in SCENE_TYPES}
    assert sum(v == "others" for v in mapping.values()) == 18
    return {
        "note": "scene_types: the 27 values of sceneTypes in the labeled file, spelled as there "
        "(including 'excercise_room'). scene_to_10 maps each to one of scene10_names "
        "(class index = position in scene10_names); the 18 rarer types pool into 'others'.",
        "source": "NYU-Depth V2 labeled file (sceneTypes); 10-class scene benchmark",
        "scene_types": list(SCENE_TYPES),
        "scene10_names": list(SCENE10_NAMES),
        "scene_to_10": mapping,
    }


def camera() -> dict[str, Any]:
    """The RGB camera's intrinsics, 0-based, and the valid crop (``camera.json``)."""
    zero_based = dict(
        INTRINSICS_1BASED, cx=INTRINSICS_1BASED["cx"] - 1, cy=INTRINSICS_1BASED["cy"] - 1
    )
    return {
        "note": "RGB camera of the labeled set (depth is registered to it), focal lengths and "
        "principal point in pixels. The published cx, cy are on MATLAB's 1-based pixel "
        "grid; 'intrinsics' stores cx - 1, cy - 1 so that pixel (row v, col u) with "
        "0-based indices back-projects as ((u - cx) z / fx, (v - cy) z / fy, z). "
        "valid_crop is the non-padded region, 0-based inclusive rows top..bottom and "
        "columns left..right.",
        "source": "NYU-Depth V2 toolbox camera_params.m (fx_rgb, fy_rgb, cx_rgb, cy_rgb)",
        "image_size": list(IMAGE_SIZE),
        "intrinsics": {k: round(v, 6) for k, v in zero_based.items()},
        "intrinsics_1based": INTRINSICS_1BASED,
        "valid_crop": VALID_CROP,
    }


def _dump(data: dict[str, Any]) -> str:
    """One top-level key per line, each value compact: diffable without 1449-line lists."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> None:
    """Write the five JSON files from the toolbox's ``.mat`` files in ``meta``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "meta", type=Path, help="folder with splits.mat, classMapping40.mat, class13Mapping.mat"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    files = {
        "splits.json": splits(args.meta),
        "classes40.json": classes40(args.meta),
        "classes13.json": classes13(args.meta),
        "scenes10.json": scenes10(),
        "camera.json": camera(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_text(_dump(data), encoding="utf-8")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
