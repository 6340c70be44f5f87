"""``supervised``: the student trained on the labels, the upper reference for distillation."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective, ObjectiveContext


@METHODS.register("supervised", "student trained with labels (cross-entropy): upper reference")
class Supervised(Objective):
    """A linear classifier on the pooled features, trained with cross-entropy.

    Args:
        student_dim: student feature size ``Ds``.
        num_classes: classes ``C``.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"labels"})

    def __init__(self, student_dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(student_dim, num_classes)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> Supervised:
        """A classifier over the dataset's classes (no options)."""
        return cls(context.student_dim, context.num_classes)

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``loss`` (cross-entropy) and ``accuracy`` of one labelled batch."""
        if labels is None:
            raise ValueError("supervised: needs labels")
        logits = self.classifier(student)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach()}
