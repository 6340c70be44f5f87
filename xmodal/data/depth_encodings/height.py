"""Height of every pixel above the floor, given the up direction.

The floor is taken to be the lowest surface in view: a low percentile of the points' heights
along ``up`` (a percentile, not the minimum, so that a few outliers below the floor, e.g.
depth noise or reflections, do not lift every other height).
"""

from __future__ import annotations

import numpy as np


def height_above_ground(points: np.ndarray, up: np.ndarray, percentile: float = 1.0) -> np.ndarray:
    """Height above the floor in metres.

    Args:
        points: ``[H, W, 3]`` camera-frame points in metres, NaN where missing.
        up: ``[3]`` up direction in the same frame (normalised here).
        percentile: the floor is this percentile (0..100) of ``p . up`` over valid points.

    Returns:
        ``[H, W]`` float32 ``p . up - floor``; NaN where the point is missing (everywhere if
        no point is valid). Points below the floor level get negative heights.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [H, W, 3], got shape {points.shape}")
    up = np.asarray(up, dtype=np.float64)
    if up.shape != (3,) or not np.isfinite(up).all() or np.linalg.norm(up) == 0:
        raise ValueError(f"up must be a non-zero 3-vector, got {up!r}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    up = up / np.linalg.norm(up)
    along = points.astype(np.float64) @ up  # NaN stays NaN
    valid = np.isfinite(along)
    if not valid.any():
        return np.full(along.shape, np.nan, np.float32)
    floor = np.percentile(along[valid], percentile)
    height: np.ndarray = (along - floor).astype(np.float32)
    return height
