"""Options of the ``nyu-depth`` dataset (kept apart so configs import no readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from xmodal.core.checks import at_least, one_of, require, within
from xmodal.core.config import AllowRepeats
from xmodal.core.deprecation import former_names


@dataclass
class NYUDepthOptions:
    """Options of the ``nyu-depth`` dataset.

    Attributes:
        path: the labeled file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, ~2.8 GB); also
            ``xmodal run nyu-depth --data PATH``. Get it with ``xmodal data download nyu-depth``.
        image_size: ``[height, width]`` in pixels after cropping the valid region (427 x 561).
        val_fraction: share of the official train split held out (seeded) to choose probe
            regularisation; distillation still uses only the remaining train frames.
        normals: surface normals from the back-projected point cloud: ``open3d`` (KNN PCA,
            ~0.5 s per frame) or ``gradient`` (finite differences on the point map, ~3x faster).
        max_frames: preprocess only the first N frames (0 = all), for quick trials.
        seed: seeds the validation hold-out.
    """

    path: str = ""
    image_size: Annotated[list[int], AllowRepeats] = field(default_factory=lambda: [120, 160])
    val_fraction: float = 0.1
    normals: str = "open3d"
    max_frames: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self,
            {
                "image_size": (
                    (lambda v: len(v) == 2 and min(v) >= 8),
                    "[height, width] >= 8 pixels",
                ),
                "val_fraction": within(0, 1, low_open=True, high_open=True),
                "normals": one_of(("gradient", "open3d")),
                "max_frames": at_least(0),
            },
        )


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"NYUDepthConfig": "NYUDepthOptions"}, globals())
