"""The gravity ("up") direction of an indoor scene, estimated from its surface normals.

Indoor scenes are mostly made of horizontal surfaces (floor, tables, ceiling) and vertical
ones (walls, cupboards). Following Gupta et al., "Learning Rich Features from RGB-D Images
for Object Detection and Segmentation" (ECCV 2014), start from the up of a level camera and
refine it: with the current estimate ``g``, take normals nearly parallel to it (``|n.g| >
cos t``, either sign) and normals nearly perpendicular to it (``|n.g| < sin t``); the new ``g``
makes the perpendicular ones as perpendicular and the parallel ones as parallel as possible,

    g = argmin_{|g|=1}  sum_perp (n.g)^2 - sum_par (n.g)^2,

the eigenvector of the smallest eigenvalue of ``N_perp^T N_perp - N_par^T N_par``. The angle
``t`` shrinks (45 then 15 degrees) as the estimate improves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Fewer usable normals than this and the estimate is noise: keep the previous one.
MIN_NORMALS = 10


def estimate_gravity(
    normals: np.ndarray,
    initial_up: Sequence[float] = (0.0, -1.0, 0.0),
    iterations: int = 5,
    thresholds_deg: Sequence[float] = (45.0, 15.0),
    max_normals: int = 50_000,
) -> np.ndarray:
    """Estimate the up direction in camera coordinates (x right, y down, z forward).

    Args:
        normals: ``[H, W, 3]`` (or ``[N, 3]``) unit normals; rows with NaN are ignored. Their
            sign does not matter.
        initial_up: start of the iteration; ``(0, -1, 0)`` is "up" for a level camera,
            since the camera's y axis points down.
        iterations: refinements per threshold.
        thresholds_deg: the angle ``t`` of each round, in degrees, usually decreasing.
        max_normals: use an even subsample (every k-th valid normal) of at most this many.

    Returns:
        ``[3]`` float64 unit up vector, with a positive dot product with ``initial_up``.
        When a refinement has fewer than :data:`MIN_NORMALS` parallel plus perpendicular
        normals (e.g. all depth missing) the previous estimate is kept, so with no usable
        normals at all this is ``initial_up`` normalised.
    """
    up0 = np.asarray(initial_up, dtype=np.float64)
    if up0.shape != (3,) or not np.isfinite(up0).all() or np.linalg.norm(up0) == 0:
        raise ValueError(f"initial_up must be a non-zero 3-vector, got {initial_up!r}")
    up0 = up0 / np.linalg.norm(up0)
    normals = np.asarray(normals)
    if normals.shape[-1] != 3:
        raise ValueError(f"normals must be [H, W, 3] or [N, 3], got shape {normals.shape}")
    n = normals.reshape(-1, 3)
    n = n[np.isfinite(n).all(1)]
    if len(n) > max_normals:  # an even spread is plenty for three unknowns, and 10x faster
        n = n[:: -(-len(n) // max_normals)]
    n = n.astype(np.float64)
    g = up0
    for threshold in thresholds_deg:
        cos_t, sin_t = np.cos(np.radians(threshold)), np.sin(np.radians(threshold))
        for _ in range(iterations):
            c = np.abs(n @ g)
            # +1 for perpendicular normals, -1 for parallel ones, 0 for the rest
            weight = (c < sin_t).astype(np.float64) - (c > cos_t)
            if np.count_nonzero(weight) < MIN_NORMALS:
                break
            a = (n * weight[:, None]).T @ n
            g = np.linalg.eigh(a)[1][:, 0]  # eigenvalues ascending
            if g @ up0 < 0:
                g = -g
    unit: np.ndarray = g / np.linalg.norm(g)
    return unit
