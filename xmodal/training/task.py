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

from xmodal.core.errors import ConfigError
from xmodal.data.augment import random_crop, random_hflip
from xmodal.encoders.base import Encoder


class NonFiniteFeatures(ArithmeticError):
    """The student's features of a training batch hold NaN or inf (its training diverged).

    The objective refused them before giving a loss.
    """


class DistillationTask(nn.Module):
    """Student + objective; ``forward(batch)`` returns the objective's dict (``"loss"`` first).

    Args:
        student: encoder of ``modality``; ``batch[modality]`` is its raw input.
        objective: a method's objective (an :class:`~xmodal.objectives.objective.Objective`).
        teacher_features: ``[N, Dt]`` frozen teacher embeddings of the training split, indexed
            by ``batch["index"]``, or None for methods without a teacher.
        hflip: mirror student inputs left-right at random while training
            (:func:`~xmodal.data.augment.random_hflip`); needs an image-aligned modality.
        seed: seeds the augmentation's generator.
        crop_padding: padded random crop of student inputs while training
            (:func:`~xmodal.data.augment.random_crop`); 0 disables; image-aligned modalities.
    """

    teacher_features: Tensor | None

    def __init__(
        self,
        student: Encoder,
        objective: nn.Module,
        teacher_features: Tensor | None = None,
        hflip: bool = False,
        seed: int = 0,
        crop_padding: int = 0,
    ) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.modality = student.modality
        self.register_buffer("teacher_features", teacher_features, persistent=False)
        self.hflip = hflip
        self.crop_padding = crop_padding
        for key, on in (("hflip", hflip), ("crop_padding", crop_padding > 0)):
            if on and not getattr(student.frontend, "image_aligned", False):
                raise ConfigError(
                    f"optim.{key} augments images, but modality '{self.modality}' is not "
                    f"image-aligned; turn optim.{key} off for it"
                )
        self._negate = getattr(student.frontend, "mirror_negates_channel", None)
        self._flip_generator = torch.Generator().manual_seed(seed + 7)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The objective's outputs for one batch (augmented while training)."""
        inputs = batch[self.modality]
        if self.hflip and self.training:
            inputs = random_hflip(inputs, self._flip_generator, negate_channel=self._negate)
        if self.crop_padding and self.training:  # the flip generator also draws the offsets
            inputs = random_crop(inputs, self._flip_generator, self.crop_padding)
        features = self.student(inputs)
        teacher = None
        if self.teacher_features is not None:
            teacher = self.teacher_features[batch["index"].to(self.teacher_features.device)]
        try:  # labels None: unlabelled
            out: dict[str, Tensor] = self.objective(
                features, teacher, batch.get("label"), batch["index"]
            )
            return out
        except ValueError:
            if not torch.isfinite(features).all():
                raise NonFiniteFeatures("the student's features are NaN or inf") from None
            raise

    def after_step(
        self, outputs: dict[str, Any], batch: dict[str, Tensor], accelerator: Any
    ) -> None:
        """Update memory banks with embeddings gathered from every process.

        So that each replica holds the same bank.
        """
        update = getattr(self.objective, "update_memory", None)
        if update is None or "teacher_embed" not in outputs:
            return
        indices = accelerator.gather(batch["index"].to(accelerator.device))
        teacher = accelerator.gather(outputs["teacher_embed"].float().contiguous())
        student = accelerator.gather(outputs["student_embed"].float().contiguous())
        update(indices, teacher, student)
