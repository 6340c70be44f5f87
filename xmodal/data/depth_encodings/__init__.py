"""Geometric encodings of depth maps: point maps, normals, gravity, height and HHA.

A depth map in metres plus the camera's :class:`Intrinsics` gives a camera-frame point map
(:func:`backproject`), per-pixel :func:`surface_normals`, the scene's up direction
(:func:`estimate_gravity`), every pixel's :func:`height_above_ground`, and the 3-channel HHA
image of Gupta et al. (:func:`hha`, or :func:`encode_depth` for all of them at once), and a
fixed-size point cloud of the valid pixels (:func:`sample_points`). Missing
depth (0 or non-finite) stays NaN in float outputs and 0 in HHA. Pure numpy; the ``open3d``
normals method imports Open3D on use.
"""

from __future__ import annotations

from xmodal.data.depth_encodings.backproject import (
    backproject,
    valid_depth,
    valid_depth_mask,
)
from xmodal.data.depth_encodings.gravity import estimate_gravity
from xmodal.data.depth_encodings.height import height_above_ground
from xmodal.data.depth_encodings.hha import DepthEncodings, encode_depth, hha
from xmodal.data.depth_encodings.intrinsics import Intrinsics
from xmodal.data.depth_encodings.normals import surface_normals
from xmodal.data.depth_encodings.points import sample_points

__all__ = [
    "DepthEncodings",
    "Intrinsics",
    "backproject",
    "encode_depth",
    "estimate_gravity",
    "height_above_ground",
    "hha",
    "sample_points",
    "surface_normals",
    "valid_depth",
    "valid_depth_mask",
]
