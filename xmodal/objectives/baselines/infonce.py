"""Symmetric in-batch InfoNCE, the CLIP loss that ImageBind binds modalities with.

Girdhar et al., CVPR 2023; Radford et al. 2021.

Linear heads and L2 normalisation embed the teacher and student features (``u_i``, ``v_i``);
``logits = exp(s) * u v^T`` with a learnable log-scale ``s`` clamped to ``[0, log(max)]``, and
``loss = weight * (CE(logits, i) + CE(logits^T, i)) / 2``: each pair against the batch's other
pairs, in both directions. No memory bank. Under several processes the candidates are gathered
from all of them (with gradient), so the negatives span the global batch.

Details: docs/baselines.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.core.checks import at_least, holds, positive, require, require_ints
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.critic import ProjectionHead
from xmodal.objectives.gather import all_gather_with_grad, rank
from xmodal.objectives.objective import Objective, ObjectiveContext

__all__ = ["InfoNCEOptions", "InfoNCEObjective"]


@dataclass
class InfoNCEOptions:
    """Girdhar et al. 2023, "ImageBind: One Embedding Space To Bind Them All".

    CLIP's loss and temperature handling.

    Attributes:
        embed_dim: size ``d`` of the shared embedding space (>= 1).
        init_temperature: initial temperature ``1/exp(s)`` (CLIP: 0.07); in
            ``[1/max_logit_scale, 1]``, the range the clamp allows.
        max_logit_scale: ``exp(s)`` is clamped to ``[1, max_logit_scale]`` (CLIP: 100).
        learn_temperature: ``s`` is a trained parameter (True) or a fixed buffer (False).
        weight: weight of the loss (> 0).
    """

    embed_dim: int = 128
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    learn_temperature: bool = True
    weight: float = 1.0

    def __post_init__(self) -> None:
        require(
            self,
            {
                "embed_dim": at_least(1),
                "init_temperature": positive(),
                "max_logit_scale": positive(),
                "learn_temperature": ((lambda v: isinstance(v, bool)), "true or false"),
                "weight": positive(),
            },
        )
        low = 1.0 / self.max_logit_scale
        require(
            self,
            {
                "max_logit_scale": holds(
                    self.max_logit_scale >= 1.0,
                    ">= 1: the scale is clamped to [1, max_logit_scale]",
                ),
                "init_temperature": holds(
                    low <= self.init_temperature <= 1.0,
                    f"in [1/max_logit_scale, 1] = [{low:g}, 1]: outside it the clamp "
                    "holds the scale at a bound, where it gets no gradient",
                ),
            },
        )


@METHODS.register(
    "infonce", "InfoNCE (ImageBind/CLIP): symmetric in-batch contrastive loss, learned temperature"
)
class InfoNCEObjective(Objective, options=InfoNCEOptions):
    """Symmetric InfoNCE between projected teacher and student features.

    Args:
        student_dim: student feature size ``Ds``.
        teacher_dim: teacher feature size ``Dt``.
        options: :class:`InfoNCEOptions`.
        seed: seeds the heads without touching the global RNG.

    Attributes:
        teacher_head, student_head: linear :class:`ProjectionHead` onto the sphere (no
            spectral norm).
        logit_scale: scalar ``s`` (``log(1/temperature)``); a parameter under
            ``learn_temperature``, else a buffer.
        max_log_scale: ``log(max_logit_scale)``, the upper clamp of ``s``.
    """

    shared_heads: ClassVar[bool] = True  # teacher_head, student_head
    options: InfoNCEOptions  # the options it was built with (on the class: their type)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> InfoNCEObjective:
        """InfoNCE for this set-up; a batch needs 2 pairs at least."""
        if context.teacher_dim is None:
            raise ValueError("needs teacher features")
        if context.batch_size is not None and context.batch_size < 2:
            raise ValueError(
                f"contrasts each pair with the other pairs of its batch, and a batch of "
                f"{context.batch_size} has none: raise distill.optim.batch_size to >= 2"
            )
        return cls(context.student_dim, context.teacher_dim, options, seed=context.seed)

    logit_scale: Tensor

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        options: InfoNCEOptions | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        options = options if options is not None else InfoNCEOptions()
        require_ints(
            "InfoNCEObjective",
            ("student_dim", student_dim, 1),
            ("teacher_dim", teacher_dim, 1),
            ("seed", seed, 0),
        )
        self.options = options
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.max_log_scale = math.log(options.max_logit_scale)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.teacher_head = ProjectionHead(teacher_dim, options.embed_dim, spectral=False)
            self.student_head = ProjectionHead(student_dim, options.embed_dim, spectral=False)
        scale = torch.tensor(math.log(1.0 / options.init_temperature))
        if options.learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """InfoNCE of one batch (``labels`` and ``indices`` are not read).

        Args:
            student: ``[B, Ds]`` student features (gradient flows).
            teacher: ``[B, Dt]`` frozen teacher features (detached here).
            labels: not read.
            indices: not read.

        Returns:
            ``loss`` (``weight * infonce``), ``infonce`` (before ``weight``, nats) and
            ``temperature`` (``1/exp(s)`` as used, after the clamp), all float32 scalars.
        """
        if teacher is None:
            raise ValueError("InfoNCEObjective: needs teacher features")
        if (
            student.dim() != 2
            or teacher.dim() != 2
            or student.shape[0] != teacher.shape[0]
            or student.shape[0] == 0
            or student.shape[1] != self.student_dim
            or teacher.shape[1] != self.teacher_dim
        ):
            raise ValueError(
                f"InfoNCEObjective: need student [B, {self.student_dim}] and teacher "
                f"[B, {self.teacher_dim}] with B >= 1, got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        dtype = self.teacher_head.linear.weight.dtype
        u = self.teacher_head(teacher.detach().to(dtype))  # [B, d] float32, unit norm
        v = self.student_head(student.to(dtype))
        with torch.autocast(device_type=u.device.type, enabled=False):
            # Clamp the value used, not the parameter: past a bound its gradient is 0.
            scale = self.logit_scale.float().clamp(0.0, self.max_log_scale).exp()
            # Local anchors against every process's candidates: [B, world * B] logits, the
            # positive of row i at column rank * B + i (open_clip's local_loss, gather_with_grad).
            u_all, v_all = all_gather_with_grad(u), all_gather_with_grad(v)
            targets = torch.arange(u.shape[0], device=u.device) + rank() * u.shape[0]
            teacher_anchor = F.cross_entropy(scale * u @ v_all.t(), targets)
            student_anchor = F.cross_entropy(scale * v @ u_all.t(), targets)
            infonce = (teacher_anchor + student_anchor) / 2
        return {
            "loss": self.options.weight * infonce,
            "infonce": infonce.detach(),
            "temperature": (1.0 / scale).detach(),
        }


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"InfoNCEConfig": "InfoNCEOptions"}, globals())
