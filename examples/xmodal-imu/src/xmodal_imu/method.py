"""The ``sp`` method: similarity-preserving knowledge distillation (Tung & Mori, ICCV 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor
from torch.nn.functional import normalize

from xmodal.core.checks import positive, require
from xmodal.objectives.objective import Objective, ObjectiveContext


@dataclass
class SPOptions:
    """Options of ``sp`` (``distill.sp``), checked when the config loads.

    Attributes:
        weight: the loss's weight (the paper's gamma).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        require(self, {"weight": positive()})


class SimilarityPreserving(Objective, options=SPOptions):
    """Similarity-preserving KD: the student keeps the teacher's pairwise similarities in a batch.

    With ``G = rownorm(F F^T)`` for the features ``F`` ``[B, D]`` of each side, the loss is
    ``weight * ||G_s - G_t||_F^2 / B^2``. Student and teacher may differ in dimension, and
    the objective has no parameters.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"teacher"})

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> SimilarityPreserving:
        """The objective for one run; it needs nothing from ``context``."""
        return cls(options.weight)

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``student`` ``[B, Ds]``, ``teacher`` ``[B, Dt]`` -> ``{"loss": scalar}``."""
        if teacher is None:
            raise ValueError("sp needs the teacher's features")
        g_s = normalize(student @ student.T, dim=1)
        g_t = normalize(teacher @ teacher.T, dim=1).detach()
        loss = (g_s - g_t).square().sum() / student.shape[0] ** 2
        return {"loss": self.weight * loss}
