"""Per-pixel surface normals of a depth map, oriented towards the camera.

Two estimators behind one function: ``gradient`` crosses the point map's image-space
derivatives (vectorised, tens of milliseconds a frame); ``open3d`` fits a plane to each point's
3-D neighbours (PCA over a radius/KNN neighbourhood), slower but blind to the pixel grid and
steadier on noisy, quantised depth.
"""

from __future__ import annotations

import numpy as np

from xmodal.data.depth_encodings.backproject import (
    backproject,
    check_depth,
    valid_depth,
)
from xmodal.data.depth_encodings.intrinsics import Intrinsics

METHODS = ("gradient", "open3d")


def surface_normals(
    depth: np.ndarray,
    K: Intrinsics,
    method: str = "gradient",
    *,
    step: int = 2,
    smooth: int = 2,
    radius: float = 0.1,
    max_nn: int = 30,
) -> np.ndarray:
    """Unit surface normals of ``depth``.

    Args:
        depth: ``[H, W]`` metres; 0 or non-finite = missing.
        K: intrinsics of this image.
        method: ``"gradient"`` or ``"open3d"``.
        step: (gradient) pixel distance of the central differences; larger is steadier on
            quantised depth, smaller keeps thin structures.
        smooth: (gradient) radius in pixels of a box mean of the points taken first, over
            valid pixels only (0 = none); planes stay exactly planar.
        radius: (open3d) neighbourhood radius in metres.
        max_nn: (open3d) at most this many nearest neighbours inside ``radius``.

    Returns:
        ``[H, W, 3]`` float32 unit normals in camera coordinates with ``n . p <= 0`` for the
        pixel's point ``p`` (facing the camera). NaN at missing depth and where no normal can
        be formed (gradient: a valid pixel with no valid neighbour on either side in a
        direction). Open3D gives points with fewer than 3 neighbours an arbitrary normal.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normals method {method!r}; choose one of {', '.join(METHODS)}")
    depth = check_depth(depth)
    if method == "gradient":
        if step < 1 or smooth < 0:
            raise ValueError(f"need step >= 1 and smooth >= 0 pixels, got {step}, {smooth}")
        return _gradient_normals(depth, K, step, smooth)
    if radius <= 0 or max_nn < 3:
        raise ValueError(f"need radius > 0 metres and max_nn >= 3, got {radius}, {max_nn}")
    return _open3d_normals(backproject(depth, K), radius, max_nn)


def _box_sum(image: np.ndarray, r: int) -> np.ndarray:
    """Sum over each ``(2r+1)^2`` window (clipped at the border), by separable running sums."""
    for axis in (0, 1):
        n = image.shape[axis]
        shape = list(image.shape)
        shape[axis] = n + 1
        c = np.zeros(shape)
        np.cumsum(image, axis=axis, out=c[1:] if axis == 0 else c[:, 1:])
        idx = np.arange(n)
        image = c.take(np.minimum(idx + r + 1, n), axis) - c.take(np.maximum(idx - r, 0), axis)
    return image


def _smoothed_points(depth: np.ndarray, valid: np.ndarray, K: Intrinsics, r: int) -> np.ndarray:
    """Point map after a box mean over the valid pixels of each window; NaN where missing.

    Averages inverse depth together with the pixel coordinates, then backprojects the mean:
    on a plane inverse depth is affine in ``(u, v)``, so the mean of ``(u, v, 1/z)`` is again
    on the plane even for a lopsided window (image border, holes). Sums are float64.
    """
    h, w = depth.shape
    weight = valid.astype(np.float64)
    inverse = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    count = np.maximum(_box_sum(weight, r), 1.0)
    mean_inverse = _box_sum(inverse, r) / count
    mean_u = _box_sum(weight * np.arange(w)[None, :], r) / count
    mean_v = _box_sum(weight * np.arange(h)[:, None], r) / count
    with np.errstate(divide="ignore"):
        z = np.where(valid, 1.0 / mean_inverse, np.nan)
    points = np.stack([(mean_u - K.cx) / K.fx * z, (mean_v - K.cy) / K.fy * z, z], axis=-1)
    return points.astype(np.float32)


def _difference(points: np.ndarray, axis: int, step: int) -> np.ndarray:
    """Derivative of the point map along ``axis`` (a vector pointing to increasing index).

    Central over ``2 * step`` pixels (one-sided at the image border), falling back to a
    one-sided difference where a neighbour is missing, so holes do not grow by ``step``.
    """
    n = points.shape[axis]
    idx = np.arange(n)
    ahead = points.take(np.minimum(idx + step, n - 1), axis)
    behind = points.take(np.maximum(idx - step, 0), axis)
    diff = ahead - behind
    for fallback in (ahead - points, points - behind):
        missing = np.isnan(diff).any(-1, keepdims=True)
        diff = np.where(missing, fallback, diff)
    derivative: np.ndarray = diff
    return derivative


def _gradient_normals(depth: np.ndarray, K: Intrinsics, step: int, smooth: int) -> np.ndarray:
    valid = valid_depth(depth)
    points = _smoothed_points(depth, valid, K, smooth) if smooth else backproject(depth, K)
    normals = np.cross(_difference(points, 1, step), _difference(points, 0, step))
    return _orient_and_normalise(normals, points, valid)


def _orient_and_normalise(normals: np.ndarray, points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        length = np.linalg.norm(normals, axis=-1, keepdims=True)
        normals = normals / length
        facing = np.einsum("hwc,hwc->hw", normals, points) > 0
    normals = np.where(facing[..., None], -normals, normals)
    bad = ~valid | ~(length[..., 0] > 1e-12) | np.isnan(normals).any(-1)
    normals[bad] = np.nan
    return normals.astype(np.float32, copy=False)


def _open3d_normals(points: np.ndarray, radius: float, max_nn: int) -> np.ndarray:
    import open3d as o3d  # heavy import: only for this method

    valid = ~np.isnan(points[..., 2])
    normals = np.full(points.shape, np.nan, np.float32)
    if not valid.any():
        return normals
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[valid].astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    normals[valid] = np.asarray(cloud.normals, dtype=np.float32)
    return _orient_and_normalise(normals, points, valid)
