"""The one trainable module: a student encoder and its objective (heads, critic, classifier).

Following timm's distillation task, everything that learns lives in ONE module, which is the
only thing wrapped for data parallelism. The frozen teacher enters as precomputed features
(a buffer indexed by sample), so it is never wrapped, never in train mode and never in the
autograd graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xmodal.encoders.base import Encoder


class DistillationTask(nn.Module):
    """Student + objective; ``forward(batch)`` returns the objective's dict (``"loss"`` first).

    Args:
        student: encoder of ``modality``; ``batch[modality]`` is its raw input.
        objective: a method's objective module (see :mod:`xmodal.objectives.methods`).
        teacher_features: ``[N, Dt]`` frozen teacher embeddings of the training split, indexed
            by ``batch["index"]``, or None for methods without a teacher.
    """

    def __init__(self, student: Encoder, objective: nn.Module,
                 teacher_features: Tensor | None = None) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.modality = student.modality
        self.register_buffer("teacher_features", teacher_features, persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        features = self.student(batch[self.modality])
        teacher = None
        if self.teacher_features is not None:
            teacher = self.teacher_features[batch["index"].to(self.teacher_features.device)]
        return self.objective(features, teacher, batch["label"], batch["index"])

    def after_step(self, outputs: dict[str, Any], batch: dict[str, Tensor], accelerator: Any) -> None:
        """Update memory banks with embeddings gathered from every process, so that each
        replica holds the same bank."""
        update = getattr(self.objective, "update_memory", None)
        if update is None or "teacher_embed" not in outputs:
            return
        indices = accelerator.gather(batch["index"].to(accelerator.device))
        teacher = accelerator.gather(outputs["teacher_embed"].float().contiguous())
        student = accelerator.gather(outputs["student_embed"].float().contiguous())
        update(indices, teacher, student)
