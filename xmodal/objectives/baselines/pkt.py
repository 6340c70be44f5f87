"""Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018).

Each side's batch of features is turned into conditional probabilities with a cosine-similarity
kernel, and the student is trained to match the teacher's distribution:

* ``K(a, b) = (cos(a, b) + 1) / 2`` in ``[0, 1]`` (features L2-normalised first);
* ``p_{j|i} = K(x_i, x_j) / sum_{k != i} K(x_i, x_k)`` for ``j != i`` (the paper excludes the
  point itself, as in t-SNE);
* ``L = mean_i KL(q_i || p_i) = mean_i sum_{j != i} q_{j|i} log(q_{j|i} / p_{j|i})`` with
  ``q`` from the teacher and ``p`` from the student (nats).

``loss = weight * L``. The features are used as they come (no connector); dimensions may differ.

Differences from the authors' code, which is what other toolkits run: that code keeps the
diagonal (``K(x_i, x_i) = 1``) in each row and averages the ``B x B`` terms (``L / B`` with
self-terms), which is why toolkits weight it by ~3e4; here the KL is per anchor and averaged
over anchors (independent of ``B``), so ``weight = 1`` is the natural default. Both use an
``eps = 1e-7`` inside the logarithms so zero kernel values stay finite; computed in float32.
A batch of fewer than 2 samples contributes 0.

Logged: ``loss``, ``kl`` (``L`` before ``weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.objectives.baselines.config import PKTConfig

__all__ = ["PKTObjective", "pkt_conditional_probabilities", "pkt_loss"]

_EPS = 1e-7


def pkt_conditional_probabilities(x: Tensor) -> Tensor:
    """``[B, B]`` row-stochastic ``p_{j|i}`` of the rescaled cosine kernel, 0 on the diagonal."""
    x = F.normalize(x.float(), dim=1, eps=1e-12)
    kernel = (x @ x.t() + 1.0) / 2.0
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    kernel = kernel.masked_fill(eye, 0.0)
    return kernel / kernel.sum(1, keepdim=True).clamp_min(_EPS)


def pkt_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """``mean_i KL(q_i || p_i)`` (scalar, nats); 0 for a batch of fewer than 2 samples."""
    b = student.shape[0]
    if b < 2:
        return student.new_zeros((), dtype=torch.float32) + 0.0 * student.float().sum()
    with torch.no_grad():
        q = pkt_conditional_probabilities(teacher.detach())
    p = pkt_conditional_probabilities(student)
    kl = q * (torch.log(q + _EPS) - torch.log(p + _EPS))  # diagonal: q = 0 -> 0
    return kl.sum(1).mean()


class PKTObjective(nn.Module):
    """PKT between the student's and the teacher's pooled features (no parameters).

    Args:
        config: :class:`PKTConfig`.
    """

    def __init__(self, config: PKTConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else PKTConfig()
        self.weight = float(self.config.weight)

    def forward(self, student: Tensor, teacher: Tensor | None, labels: Tensor,
                indices: Tensor) -> dict[str, Tensor]:
        if teacher is None:
            raise ValueError("PKTObjective: needs teacher features")
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f"PKTObjective: need student [B, Ds] and teacher [B, Dt], got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        with torch.autocast(device_type=student.device.type, enabled=False):
            kl = pkt_loss(student, teacher)
        return {"loss": self.weight * kl, "kl": kl.detach()}
