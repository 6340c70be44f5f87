"""Depth map -> a fixed-size point cloud: the valid pixels, back-projected and sampled.

Point networks take a fixed number of points per batch, while the number of pixels with depth
varies. Sampling without replacement keeps every point distinct when there are enough; with
too few, the valid points are repeated in turn, which a max-pooling network does not notice.
"""

from __future__ import annotations

import numpy as np

from xmodal.data.depth_encodings.backproject import backproject
from xmodal.data.depth_encodings.intrinsics import Intrinsics


def sample_points(
    depth: np.ndarray, K: Intrinsics, num_points: int, rng: np.random.Generator
) -> np.ndarray:
    """``num_points`` camera-frame points of the pixels with depth, in random order.

    Args:
        depth: ``[H, W]`` z-depth in metres; 0, negative or non-finite means no measurement.
        K: intrinsics of this image (see :func:`~xmodal.data.depth_encodings.backproject`).
        num_points: N, the points returned.
        rng: draws which pixels (and their order); seed it per sample for determinism.

    Returns:
        ``[N, 3]`` float32 xyz in metres: N distinct valid pixels when there are at least N,
        else every valid pixel, repeated cyclically up to N; all NaN when no pixel has depth.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    points = backproject(depth, K).reshape(-1, 3)
    valid = np.flatnonzero(np.isfinite(points[:, 2]))
    if len(valid) == 0:
        return np.full((num_points, 3), np.nan, np.float32)
    order = valid[rng.permutation(len(valid))]
    return points[order[np.arange(num_points) % len(order)]]
