"""Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018).

Each side's batch is turned into conditional probabilities ``p_{j|i}`` with the cosine kernel
``(cos + 1) / 2`` (the point itself excluded), and the student matches the teacher's:
``loss = weight * mean_i KL(q_i || p_i)``. Features are used as they come (no connector).

Details (formulas, differences from the authors' code): docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xmodal.core.checks import positive, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective, ObjectiveContext

__all__ = ["PKTOptions", "PKTObjective", "pkt_conditional_probabilities", "pkt_loss"]

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


@dataclass
class PKTOptions:
    """Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer".

    Attributes:
        weight: weight of the KL between the teacher's and the student's conditional
            probability distributions (> 0).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        require(self, {"weight": positive()})


@METHODS.register(
    "pkt", "PKT: KL between cosine-kernel conditional probabilities of teacher and student"
)
class PKTObjective(Objective, options=PKTOptions):
    """PKT between the student's and the teacher's pooled features (no parameters).

    Args:
        options: :class:`PKTOptions`.
    """

    options: PKTOptions  # the options it was built with (on the class: their type)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> PKTObjective:
        """PKT (no parameters)."""
        return cls(options)

    def __init__(self, options: PKTOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else PKTOptions()

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``loss`` and ``kl`` of one batch (``labels`` and ``indices`` are not read)."""
        if teacher is None:
            raise ValueError("PKTObjective: needs teacher features")
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"PKTObjective: need student [B, Ds] and teacher [B, Dt], got "
                f"{tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        with torch.autocast(device_type=student.device.type, enabled=False):
            kl = pkt_loss(student, teacher)
        return {"loss": self.options.weight * kl, "kl": kl.detach()}


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"PKTConfig": "PKTOptions"}, globals())
