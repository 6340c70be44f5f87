"""FitNet hints on pooled features (Romero et al. 2015).

FitNets regress a student's intermediate feature map onto the teacher's through a learned
regressor (a convolution). Here both sides are pooled feature vectors, so the regressor is a
linear connector ``Ds -> Dt`` (trained with the student and discarded afterwards)::

    loss = weight * mean_{i, j} ((W s_i + b)_j - t_ij)^2

with ``t`` the frozen teacher's standardised features (mean over batch and teacher dimensions,
i.e. ``F.mse_loss``). Logged: ``loss``, ``mse`` (before ``weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.core.checks import positive, require, require_ints
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective, ObjectiveContext

__all__ = ["FitNetOptions", "FitNetObjective"]


@dataclass
class FitNetOptions:
    """Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", on pooled features.

    ``loss = weight * mean((W s + b - t)^2)`` with a trained linear connector ``W, b``.

    Attributes:
        weight: weight of the hint loss (> 0).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        require(self, {"weight": positive()})


@METHODS.register(
    "fitnet", "FitNet: MSE from a linear connector on the student's features to the teacher's"
)
class FitNetObjective(Objective, options=FitNetOptions):
    """FitNet hint loss through a linear connector.

    Args:
        student_dim: student feature size ``Ds``.
        teacher_dim: teacher feature size ``Dt``.
        options: :class:`FitNetOptions`.
        seed: seeds the connector's initialisation without touching the global RNG.

    Attributes:
        connector: ``nn.Linear(Ds, Dt)``.
    """

    options: FitNetOptions  # the options it was built with (on the class: their type)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> FitNetObjective:
        """FitNet for this set-up (a connector ``Ds -> Dt``)."""
        if context.teacher_dim is None:
            raise ValueError("needs teacher features")
        return cls(context.student_dim, context.teacher_dim, options, seed=context.seed)

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        options: FitNetOptions | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        options = options if options is not None else FitNetOptions()
        require_ints(
            "FitNetObjective", ("student_dim", student_dim, 1), ("teacher_dim", teacher_dim, 1)
        )
        self.options = options
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.connector = nn.Linear(student_dim, teacher_dim)

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``loss`` and ``mse`` of one batch (``labels`` and ``indices`` are not read)."""
        if teacher is None:
            raise ValueError("FitNetObjective: needs teacher features")
        if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"FitNetObjective: need student [B, Ds] and teacher [B, Dt], got "
                f"{tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        predicted = self.connector(student.to(self.connector.weight.dtype))
        with torch.autocast(device_type=predicted.device.type, enabled=False):
            mse = F.mse_loss(predicted.float(), teacher.detach().float())
        return {"loss": self.options.weight * mse, "mse": mse.detach()}


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"FitNetConfig": "FitNetOptions"}, globals())
