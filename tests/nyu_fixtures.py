"""Write small files in the exact layout of ``nyu_depth_v2_labeled.mat`` (a test helper module).

``hdf5storage.savemat(..., matlab_compatible=True)`` produces what MATLAB's ``save -v7.3``
does: the 512-byte MATLAB header, ``MATLAB_class`` attributes, arrays transposed (MATLAB is
column-major, so h5py sees the axes reversed) and cells of char as object references to
``(len, 1)`` uint16 datasets. The planted pixel values ramp differently along rows and columns
and carry a marker at (row 5, col 9), so any transposed or flipped read shows up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hdf5storage
import numpy as np

MARKER = (5, 9)  # (row, col) of the marker pixel; needs height > 5 and width > 9
SCENE_TYPES = ("bedroom", "excercise_room", "kitchen", "living_room", "study")
NUM_NAMES = 894


def _cell(strings: list[str]) -> np.ndarray:
    """A MATLAB ``(n, 1)`` cell of char: stored as a ``(1, n)`` array of object references."""
    cell = np.empty((len(strings), 1), dtype=object)
    for k, s in enumerate(strings):
        cell[k, 0] = np.str_(s)
    return cell


def planted(frames: int = 3, height: int = 480, width: int = 640, seed: int = 0) -> dict[str, Any]:
    """The arrays and strings :func:`write_nyu_labeled` stores, in image orientation.

    ``rgb`` [N, H, W, 3] uint8, ``depth``/``raw_depth`` [N, H, W] float32 metres, ``labels``
    [N, H, W] uint16, ``instances`` [N, H, W] uint8, ``accel`` [N, 4], ``names`` (894),
    ``scenes`` and ``scene_types`` (N each).
    """
    rng = np.random.default_rng(seed)
    n = np.arange(frames)[:, None, None]
    r = np.arange(height)[None, :, None]
    c = np.arange(width)[None, None, :]
    mr, mc = MARKER
    rgb = np.stack([(r * 3 + c * 7 + n * 11 + 50 * ch) % 256 for ch in range(3)], axis=-1)
    rgb = rgb.astype(np.uint8)
    rgb[:, mr, mc] = (255, 0, 128)
    depth = (1.0 + 0.02 * r + 0.005 * c + 0.5 * n).astype(np.float32)
    depth[:, mr, mc] = 9.5
    raw = depth.copy()
    raw[rng.random(raw.shape) < 0.1] = 0.0  # holes, as in the sensor data
    raw[:, mr, mc] = 0.0
    raw[:, 0, 0] = 7.25
    labels = ((r * 13 + c * 5 + n * 17) % (NUM_NAMES + 1)).astype(np.uint16)
    labels[:, mr, mc] = NUM_NAMES
    instances = ((r + 2 * c + n) % 250).astype(np.uint8)
    instances[:, mr, mc] = 251
    types = [SCENE_TYPES[i % len(SCENE_TYPES)] for i in range(frames)]
    names = [f"class_{k:03d}" for k in range(1, NUM_NAMES + 1)]
    names[:3] = ["book", "chaise longue", "café table"]  # a space and a non-ASCII code unit
    return {
        "rgb": rgb,
        "depth": depth,
        "raw_depth": raw,
        "labels": labels,
        "instances": instances,
        "accel": rng.normal(size=(frames, 4)),
        "names": names,
        "scenes": [f"{t}_{i + 1:04d}" for i, t in enumerate(types)],
        "scene_types": types,
    }


def write_nyu_labeled(
    path: str | Path,
    frames: int = 3,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Write a labeled-set file at ``path`` and return :func:`planted` (image orientation).

    ``overrides`` replace a MATLAB variable as passed to savemat, i.e. in MATLAB orientation
    (``images`` (H, W, 3, N), per-pixel maps (H, W, N), ``accelData`` (N, 4), cells (n, 1)),
    or drop it when given ``None``. The returned arrays are the planted ones, before overrides.
    """
    data = planted(frames, height, width, seed)
    # Image orientation (N, H, W, ...) -> MATLAB's (H, W, ..., N); savemat then reverses axes.
    variables: dict[str, Any] = {
        "images": np.ascontiguousarray(data["rgb"].transpose(1, 2, 3, 0)),
        "depths": np.ascontiguousarray(data["depth"].transpose(1, 2, 0)),
        "rawDepths": np.ascontiguousarray(data["raw_depth"].transpose(1, 2, 0)),
        "labels": np.ascontiguousarray(data["labels"].transpose(1, 2, 0)),
        "instances": np.ascontiguousarray(data["instances"].transpose(1, 2, 0)),
        "accelData": data["accel"],
        "names": _cell(data["names"]),
        "scenes": _cell(data["scenes"]),
        "sceneTypes": _cell(data["scene_types"]),
    }
    for key, value in overrides.items():
        if value is None:
            variables.pop(key, None)
        else:
            variables[key] = value
    path = Path(path)
    path.unlink(missing_ok=True)  # savemat would otherwise add to an existing file
    # Format 7.3 is savemat's default (its keyword was renamed format -> fmt in 0.2).
    hdf5storage.savemat(
        str(path),
        variables,
        appendmat=False,
        matlab_compatible=True,
        store_python_metadata=False,
        truncate_existing=True,
    )
    return data
