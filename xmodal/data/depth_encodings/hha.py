"""HHA: a depth map as three 8-bit channels a 3-channel image network can take.

Gupta et al. (ECCV 2014) encode depth as Horizontal disparity, Height above ground and the
Angle between the surface normal and gravity: geometry a network cannot easily infer from raw
depth, in an image-like layout. Normals, gravity and height are computed once and returned
with the HHA image (:class:`DepthEncodings`) so callers can cache them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodal.data.depth_encodings.backproject import backproject, check_depth
from xmodal.data.depth_encodings.gravity import estimate_gravity
from xmodal.data.depth_encodings.height import height_above_ground
from xmodal.data.depth_encodings.intrinsics import Intrinsics
from xmodal.data.depth_encodings.normals import surface_normals

#: Depth in metres whose disparity saturates channel 0 (about the Kinect's nearest range).
NEAR_DEPTH = 0.5
#: Channel 1 levels per metre of height: 1 per cm, so 0..2.55 m.
HEIGHT_LEVELS_PER_METRE = 100.0
#: Channel 2 levels per degree: 0..180 degrees onto 0..255.
ANGLE_LEVELS_PER_DEGREE = 255.0 / 180.0


@dataclass
class DepthEncodings:
    """Everything derived from one depth map (``[H, W]`` as the input).

    Attributes:
        normals: ``[H, W, 3]`` float32 unit normals facing the camera, NaN where unavailable.
        height: ``[H, W]`` float32 metres above the floor, NaN where depth is missing.
        up: ``[3]`` float64 unit up vector in camera coordinates (x right, y down, z forward).
        hha: ``[H, W, 3]`` uint8 HHA image, see :func:`encode_depth`.
    """

    normals: np.ndarray
    height: np.ndarray
    up: np.ndarray
    hha: np.ndarray


def encode_depth(
    depth: np.ndarray, K: Intrinsics, normals_method: str = "gradient", up: np.ndarray | None = None
) -> DepthEncodings:
    """Normals, gravity, height and HHA of a depth map.

    Args:
        depth: ``[H, W]`` float metres; 0 or non-finite = missing.
        K: intrinsics of this image.
        normals_method: ``"gradient"`` or ``"open3d"`` (see :func:`surface_normals`).
        up: known ``[3]`` up vector in camera coordinates; estimated from the normals
            (:func:`estimate_gravity`) when None.

    HHA channels (uint8, each rounded to the nearest level and clipped to 0..255):

    0. disparity: ``255 * min(1, 0.5 m / z)``, i.e. 255 at 0.5 m or nearer, 127.5 at 1 m,
       31.9 at 4 m; at least 1 for every valid pixel, so 0 here means "no depth".
    1. height above the floor: 1 level per cm, ``100 * h`` (0..2.55 m; below floor -> 0).
    2. angle between the normal and up: ``angle_deg * 255 / 180`` (floor 0, wall 127.5 -> 128,
       ceiling 255); 0 where a valid pixel has no normal (isolated measurements).

    All three channels are exactly 0 where depth is missing.
    """
    depth = check_depth(depth)
    normals = surface_normals(depth, K, method=normals_method)
    g = estimate_gravity(normals) if up is None else np.asarray(up, dtype=np.float64)
    if g.shape != (3,) or not np.isfinite(g).all() or np.linalg.norm(g) == 0:
        raise ValueError(f"up must be a non-zero 3-vector, got {up!r}")
    g = g / np.linalg.norm(g)
    points = backproject(depth, K)
    height = height_above_ground(points, g)
    valid = ~np.isnan(points[..., 2])

    out = np.zeros(depth.shape + (3,), np.uint8)
    z = points[..., 2][valid]
    out[..., 0][valid] = _levels(255.0 * np.minimum(1.0, NEAR_DEPTH / z), low=1)
    out[..., 1][valid] = _levels(HEIGHT_LEVELS_PER_METRE * height[valid])
    cosine = np.clip(normals @ g.astype(np.float32), -1.0, 1.0)
    has_normal = ~np.isnan(cosine)
    out[..., 2][has_normal] = _levels(
        np.degrees(np.arccos(cosine[has_normal])) * ANGLE_LEVELS_PER_DEGREE
    )
    return DepthEncodings(normals=normals, height=height, up=g, hha=out)


def hha(
    depth: np.ndarray, K: Intrinsics, normals_method: str = "gradient", up: np.ndarray | None = None
) -> np.ndarray:
    """``[H, W, 3]`` uint8 HHA image of ``depth`` (metres); see :func:`encode_depth`."""
    return encode_depth(depth, K, normals_method=normals_method, up=up).hha


def _levels(values: np.ndarray, low: int = 0) -> np.ndarray:
    levels: np.ndarray = np.clip(np.rint(values), low, 255).astype(np.uint8)
    return levels
