"""The ``points`` modality of ``scenes``: each sample's depth map as a fixed-size point cloud.

Computed from the cached depth as each batch is read, not stored in it, so the HDF5 layout
stays as it is. Each sample draws its points from its own generator seeded by ``(seed, split
id, index)`` plus a stream id of its own, so a sample's cloud is the same whatever the split
sizes, the load order, or any other random draw.
"""

from __future__ import annotations

import numpy as np

from xmodal.data.depth_encodings import Intrinsics, sample_points
from xmodal.data.scenes.generate import SPLIT_IDS

#: keeps the points' generators apart from the sample generators of ``generate_sample``
POINTS_STREAM = 1


def scene_points(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    num_points: int,
    seed: int,
    split: str,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """``[N, H, W]`` depth maps (metres) of ``split`` -> ``[N, num_points, 3]`` point clouds.

    Float32 camera-frame xyz in metres; sample ``i`` (its index in the split: ``indices[k]``
    for the ``k``-th map, or ``k``) is drawn with the generator of ``(seed, split, i)``.
    """
    if depth.ndim != 3:
        raise ValueError(f"scene_points needs depth maps [N, H, W], got shape {depth.shape}")
    out = np.empty((len(depth), num_points, 3), np.float32)
    for k, d in enumerate(depth):
        i = int(indices[k]) if indices is not None else k
        sequence = np.random.SeedSequence([seed, SPLIT_IDS[split], i, POINTS_STREAM])
        rng = np.random.default_rng(sequence)
        out[k] = sample_points(d, intrinsics, num_points, rng)
    return out
