"""Pinhole intrinsics that follow an image through crops and resizes.

Depth encodings need the geometry of the pixels actually processed: NYU frames are cropped to
their valid region before HHA is computed, and cached arrays are resized afterwards, so the
camera model has to move with the image rather than stay at the sensor's calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera: focal lengths ``fx, fy`` and principal point ``cx, cy``, all in pixels.

    The principal point is on the 0-based pixel grid (pixel ``(u, v)`` has its centre at
    column ``u``, row ``v``), so a pixel centre projects as ``u = fx * x / z + cx``.
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Intrinsics.{name} must be finite, got {getattr(self, name)}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be > 0 pixels, got fx={self.fx}, fy={self.fy}")

    def cropped(self, top: int, left: int) -> Intrinsics:
        """The camera of ``image[top:, left:]``: the principal point moves, focal lengths stay."""
        return Intrinsics(self.fx, self.fy, self.cx - left, self.cy - top)

    def scaled(self, sy: float, sx: float) -> Intrinsics:
        """The camera of the image resized by factors ``sy`` (rows) and ``sx`` (columns).

        Pixel edges scale, pixel centres do not: the centre ``c`` of the old grid lies at
        ``(c + 0.5) * s - 0.5`` on the new one (the convention of area/bilinear resizing with
        ``align_corners=False``).
        """
        if not (sy > 0 and sx > 0):
            raise ValueError(f"scale factors must be > 0, got sy={sy}, sx={sx}")
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5
        )

    def matrix(self) -> np.ndarray:
        """The ``[3, 3]`` float64 calibration matrix ``K`` (``[u, v, 1]^T ~ K [x, y, z]^T``)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
