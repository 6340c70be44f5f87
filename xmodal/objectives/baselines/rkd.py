"""Relational Knowledge Distillation: distance-wise and angle-wise terms (Park et al., CVPR 2019).

Transfers the *structure* of a batch: the student's pairwise distances (normalised by their
mean) and triplet angles are matched to the teacher's with a Huber loss, on the pooled
features directly (no connector; dimensions may differ).
``loss = distance_weight * L_D + angle_weight * L_A`` (defaults 25, 50 as in the paper).

Details (formulas, differences from the reference code): docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xmodal.core.checks import holds, non_negative, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective, ObjectiveContext

__all__ = ["RKDOptions", "RKDObjective", "rkd_distance", "rkd_angle"]

_EPS = 1e-12


def _centred_gram(x: Tensor) -> Tensor:
    x = x.float()
    x = x - x.mean(0, keepdim=True)  # translation-invariant terms; removes a large common offset
    return x @ x.t()


def _distances(gram: Tensor) -> Tensor:
    """Pairwise Euclidean distances ``[B, B]`` from a Gram matrix (0 on the diagonal)."""
    sq = gram.diagonal()
    d2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * gram).clamp_min(_EPS)
    dist = d2.sqrt()
    eye = torch.eye(gram.shape[0], dtype=torch.bool, device=gram.device)
    return dist.masked_fill(eye, 0.0)


def _normalised_distances(x: Tensor) -> Tensor:
    dist = _distances(_centred_gram(x))
    b = x.shape[0]
    mean = dist.sum() / (b * (b - 1))
    return dist / mean.clamp_min(_EPS)


def rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """Distance-wise RKD term (scalar); 0 for a batch of fewer than 2 samples."""
    b = student.shape[0]
    if b < 2:
        return student.new_zeros((), dtype=torch.float32) + 0.0 * student.float().sum()
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=student.device)
    with torch.no_grad():
        target = _normalised_distances(teacher.detach())[off_diagonal]
    return F.smooth_l1_loss(_normalised_distances(student)[off_diagonal], target)


def _cosines(x: Tensor) -> Tensor:
    """``[B, B, B]`` with entry ``[i, j, k] = <e_ij, e_kj>``: the cosine at vertex ``j``."""
    gram = _centred_gram(x)
    dist = _distances(gram)
    diag = gram.diagonal()
    # <x_i - x_j, x_k - x_j> = G_ik - G_ij - G_kj + G_jj
    dots = gram.unsqueeze(1) - gram.unsqueeze(2) - gram.t().unsqueeze(0) + diag.view(1, -1, 1)
    # dots[i, j, k]: gram[i, k] - gram[i, j] - gram[j, k] + gram[j, j]
    norms = dist.unsqueeze(2) * dist.t().unsqueeze(0)  # |x_i - x_j| * |x_k - x_j|
    return dots / norms.clamp_min(_EPS)


def _distinct_triplets(b: int, device: torch.device) -> Tensor:
    r = torch.arange(b, device=device)
    i, j, k = r.view(-1, 1, 1), r.view(1, -1, 1), r.view(1, 1, -1)
    return (i != j) & (j != k) & (i != k)


def rkd_angle(student: Tensor, teacher: Tensor) -> Tensor:
    """Angle-wise RKD term (scalar); 0 for a batch of fewer than 3 samples."""
    b = student.shape[0]
    if b < 3:
        return student.new_zeros((), dtype=torch.float32) + 0.0 * student.float().sum()
    mask = _distinct_triplets(b, student.device)
    with torch.no_grad():
        target = _cosines(teacher.detach())[mask]
    return F.smooth_l1_loss(_cosines(student)[mask], target)


@dataclass
class RKDOptions:
    """Park et al. 2019, "Relational Knowledge Distillation" (distance + angle).

    Attributes:
        distance_weight: weight of the distance-wise term (>= 0); 25.
        angle_weight: weight of the angle-wise term (>= 0); 50.

    The two weights cannot both be 0.
    """

    distance_weight: float = 25.0
    angle_weight: float = 50.0

    def __post_init__(self) -> None:
        require(self, {"distance_weight": non_negative(), "angle_weight": non_negative()})
        require(
            self,
            {
                "angle_weight": holds(
                    self.distance_weight > 0 or self.angle_weight > 0,
                    "> 0 when distance_weight is 0 (one term at least)",
                )
            },
        )


@METHODS.register("rkd", "RKD: relational distance + angle matching of the batch's features")
class RKDObjective(Objective, options=RKDOptions):
    """RKD (distance + angle) between the student's and the teacher's pooled features.

    Args:
        options: :class:`RKDOptions`.

    Has no parameters: only the student learns.
    """

    options: RKDOptions  # the options it was built with (on the class: their type)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> RKDObjective:
        """RKD (no parameters)."""
        return cls(options)

    def __init__(self, options: RKDOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else RKDOptions()

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``loss``, ``distance`` and ``angle`` of one batch (``labels``, ``indices`` unread)."""
        if teacher is None:
            raise ValueError("RKDObjective: needs teacher features")
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"RKDObjective: need student [B, Ds] and teacher [B, Dt], got "
                f"{tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        with torch.autocast(device_type=student.device.type, enabled=False):
            zero = student.new_zeros((), dtype=torch.float32)
            distance = rkd_distance(student, teacher) if self.options.distance_weight > 0 else zero
            angle = rkd_angle(student, teacher) if self.options.angle_weight > 0 else zero
            loss = self.options.distance_weight * distance + self.options.angle_weight * angle
        return {"loss": loss, "distance": distance.detach(), "angle": angle.detach()}


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"RKDConfig": "RKDOptions"}, globals())
