"""Relational Knowledge Distillation: distance-wise and angle-wise terms (Park et al., CVPR 2019).

RKD transfers the *structure* of a batch rather than the embeddings themselves, so it compares
the student's and the teacher's pooled features directly, whatever their dimensions (no
connector, nothing trained besides the student).

* Distance: ``psi_D(x_i, x_j) = |x_i - x_j| / mu`` with ``mu`` the mean distance over the
  batch's distinct pairs ``i != j``;
  ``L_D = mean_{i != j} huber(psi_D(s_i, s_j) - psi_D(t_i, t_j))``.
* Angle: ``psi_A(x_i, x_j, x_k) = <e_ij, e_kj>`` (cosine of the angle at the vertex ``x_j``,
  ``e_ij = (x_i - x_j)/|x_i - x_j|``); ``L_A = mean over distinct triplets of huber(...)``.
* ``loss = distance_weight * L_D + angle_weight * L_A`` (defaults 25, 50 as in the paper).

``huber`` is smooth L1 with threshold 1 (``F.smooth_l1_loss``). Both terms are invariant to
translating, rotating and scaling each side separately.

Implementation notes: the averages run over distinct pairs/triplets only (the reference code
averages over all ``B^2`` / ``B^3`` entries, degenerate ones included, a factor ``~(B-1)/B`` and
``~(B-1)(B-2)/B^2`` apart). Angles come from the Gram matrix of the batch-centred features
(``<x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj``): ``O(B^3)`` memory, independent of the
feature size (the direct form builds ``[B, B, D]`` differences). Computed in float32. A batch
with fewer than 2 samples (3 for the angle) contributes 0 for that term.

Logged: ``loss``, ``distance`` (``L_D``), ``angle`` (``L_A``), before the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.objectives.baselines.config import RKDConfig

__all__ = ["RKDObjective", "rkd_distance", "rkd_angle"]

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


class RKDObjective(nn.Module):
    """RKD (distance + angle) between the student's and the teacher's pooled features.

    Args:
        config: :class:`RKDConfig`.

    Has no parameters: only the student learns.
    """

    def __init__(self, config: RKDConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else RKDConfig()
        self.distance_weight = float(self.config.distance_weight)
        self.angle_weight = float(self.config.angle_weight)

    def forward(self, student: Tensor, teacher: Tensor | None, labels: Tensor,
                indices: Tensor) -> dict[str, Tensor]:
        if teacher is None:
            raise ValueError("RKDObjective: needs teacher features")
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f"RKDObjective: need student [B, Ds] and teacher [B, Dt], got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            zero = student.new_zeros((), dtype=torch.float32)
            distance = rkd_distance(student, teacher) if self.distance_weight > 0 else zero
            angle = rkd_angle(student, teacher) if self.angle_weight > 0 else zero
            loss = self.distance_weight * distance + self.angle_weight * angle
        return {"loss": loss, "distance": distance.detach(), "angle": angle.detach()}
