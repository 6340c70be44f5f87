"""Depth map -> 3-D points in camera coordinates, with missing depth kept as NaN.

Every other depth encoding (normals, height, HHA) starts from this point map, so the input
checks and the one definition of "valid depth" live here. Camera axes: x right, y down,
z forward (z equals the depth).
"""

from __future__ import annotations

import numpy as np

from xmodal.data.depth_encodings.intrinsics import Intrinsics


def check_depth(depth: np.ndarray) -> np.ndarray:
    """``depth`` as a float32 ``[H, W]`` array, or a ValueError that says what is wrong."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D [H, W] array of metres, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(
            f"depth must be a float array of metres, got dtype {depth.dtype} "
            "(raw sensor depth in millimetres? divide by 1000 first)"
        )
    if depth.size == 0:
        raise ValueError(f"depth is empty (shape {depth.shape})")
    return depth.astype(np.float32, copy=False)


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """``[...]`` depth in metres (any shape) -> bool mask of the same shape: finite and > 0."""
    depth = np.asarray(depth)
    with np.errstate(invalid="ignore"):  # NaN > 0 is simply False
        valid: np.ndarray = np.isfinite(depth) & (depth > 0)
    return valid


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """Boolean ``[H, W]`` mask of pixels with a measurement, for a checked 2-D depth map."""
    return valid_depth_mask(check_depth(depth))


def backproject(depth: np.ndarray, K: Intrinsics) -> np.ndarray:
    """Lift a depth map to a point map.

    Args:
        depth: ``[H, W]`` depth along the optical axis in metres; 0, negative or non-finite
            values mean "no measurement".
        K: intrinsics of this very image (crop/resize it first, see :class:`Intrinsics`).

    Returns:
        ``[H, W, 3]`` float32 points ``(x, y, z)`` in metres, camera coordinates:
        ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy`` for column ``u`` and row ``v``.
        NaN at pixels without depth.
    """
    depth = check_depth(depth)
    h, w = depth.shape
    z = np.where(valid_depth(depth), depth, np.float32(np.nan))
    rays_x = ((np.arange(w, dtype=np.float64) - K.cx) / K.fx).astype(np.float32)
    rays_y = ((np.arange(h, dtype=np.float64) - K.cy) / K.fy).astype(np.float32)
    points = np.empty((h, w, 3), np.float32)
    np.multiply(z, rays_x[None, :], out=points[..., 0])
    np.multiply(z, rays_y[:, None], out=points[..., 1])
    points[..., 2] = z
    return points
