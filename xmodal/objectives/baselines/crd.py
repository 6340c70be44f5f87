"""Contrastive Representation Distillation, NCE form (Tian, Krishnan & Isola, ICLR 2020).

Linear heads and L2 normalisation embed the teacher and student features (``u_i``, ``v_i``);
each sample has a row in two momentum memory banks, ``mT`` (teacher) and ``mS`` (student). A pair
is modelled as ``P(u, v) = exp(<u, v> / tau) / Z`` and scored by NCE against ``K`` bank
negatives under uniform noise ``1/N``, in both directions: ``loss = weight * (L_T + L_S)``.
``Z`` is estimated once, from the first forward, as in CRD's reference code.

Details (the NCE loss, ``Z``, negative sampling, reference-code differences): docs/baselines.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from xmodal.core.checks import literal_rules, non_negative, positive, require, require_ints
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.critic import ProjectionHead
from xmodal.objectives.memory_bank import MemoryBank, is_integer, negatives_per_step
from xmodal.objectives.memory_options import MemoryOptions
from xmodal.objectives.nce import nce_loss, nce_normaliser
from xmodal.objectives.negative_memory import build_memories
from xmodal.objectives.negative_queue import NegativeQueue
from xmodal.objectives.objective import (
    Objective,
    ObjectiveContext,
    check_room_for_negatives,
)
from xmodal.objectives.task_terms import LabelTerms

__all__ = ["CRDOptions", "CRDObjective", "nce_loss"]


@dataclass
class CRDOptions(MemoryOptions):
    """Tian et al. 2019, "Contrastive Representation Distillation" (NCE form, reference defaults).

    Beside the memory's options (:class:`~xmodal.objectives.memory_options.MemoryOptions`;
    under ``negatives=other_class, sharing=batch`` the anchor's own class is masked out of the
    shared set).

    Attributes:
        weight: weight of the (two-direction) NCE loss (> 0); 0.8 (CRD's beta).
        replacement: draw with replacement (True) or without (False, default).
            RepDistiller's CIFAR-100 sampler, which the WCoRD paper compares against, is
            ``negatives=other_class, sharing=anchor, replacement=False``.
        alpha: weight of a cross-entropy on labels through a linear student classifier (>= 0);
            0 (default) keeps CRD label-free; CRD's CIFAR recipe trains ``CE + 0.8 * NCE``, i.e. 1.
    """

    weight: float = 0.8
    replacement: bool = False
    alpha: float = 0.0

    def __post_init__(self) -> None:
        require(
            self,
            {
                **self.memory_rules(),
                "weight": positive(),
                "replacement": ((lambda v: isinstance(v, bool)), "true or false"),
                "alpha": non_negative(),
                **literal_rules(self),
            },
        )
        require(self, self.memory_relations())


@METHODS.register(
    "crd", "CRD: NCE against memory-bank negatives, Z estimated once from the first batch"
)
class CRDObjective(Objective, options=CRDOptions):
    """CRD NCE objective with its heads, memory banks and normalisation constants.

    Args:
        student_dim: student feature size ``Ds``.
        teacher_dim: teacher feature size ``Dt``.
        num_samples: training-set size ``N`` (bank rows), >= 2.
        options: :class:`CRDOptions`.
        seed: seeds the heads (without touching the global RNG), the banks and the sampling.
        sample_labels: ``[N]`` class of every training sample; needed by ``negatives=other_class``.
        num_classes: classes of the student classifier used when ``options.alpha > 0``.

    Attributes:
        teacher_head, student_head: linear :class:`ProjectionHead` (no spectral norm).
        teacher_bank, student_bank: :class:`MemoryBank` ``[N, d]``.
        z_teacher, z_student: buffers (scalars), ``Z`` of the teacher-anchor and the
            student-anchor scores; ``-1`` until the first forward estimates them.
        num_negatives_effective: ``min(num_negatives, N - 1)``.
    """

    shared_heads: ClassVar[bool] = True  # teacher_head, student_head
    options: CRDOptions  # the options it was built with (on the class: their type)

    @classmethod
    def needs_for(cls, options: Any) -> frozenset[str]:
        """The teacher, and labels for ``alpha > 0`` or ``negatives=other_class``."""
        labelled = options.alpha > 0 or options.negatives == "other_class"
        return cls.needs | ({"labels"} if labelled else set())

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> CRDObjective:
        """CRD for this set-up (its heads, memories and, with ``alpha > 0``, a classifier)."""
        if context.teacher_dim is None:
            raise ValueError("needs teacher features")
        if options.negatives != "queue":
            check_room_for_negatives(context, "crd")
        if options.negatives == "other_class" and context.train_labels is None:
            raise ValueError("crd.negatives=other_class needs labels; use crd.negatives=uniform")
        return cls(
            context.student_dim,
            context.teacher_dim,
            context.num_samples,
            options,
            seed=context.seed,
            sample_labels=context.train_labels,
            num_classes=context.num_classes,
        )

    z_teacher: Tensor
    z_student: Tensor

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        options: CRDOptions | None = None,
        seed: int = 0,
        sample_labels: Tensor | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        options = options if options is not None else CRDOptions()
        require_ints(
            "CRDObjective",
            ("student_dim", student_dim, 1),
            ("teacher_dim", teacher_dim, 1),
            ("num_samples", num_samples, 2),
            ("seed", seed, 0),
        )
        if options.negatives == "other_class" and sample_labels is None:
            raise ValueError(
                "CRDObjective: negatives=other_class needs sample_labels (the [N] labels "
                "of the training split); use negatives=uniform on unlabelled data"
            )
        self.options = options
        self.num_samples = num_samples
        self.num_negatives_effective = negatives_per_step(options.num_negatives, num_samples)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.teacher_head = ProjectionHead(teacher_dim, options.embed_dim, spectral=False)
            self.student_head = ProjectionHead(student_dim, options.embed_dim, spectral=False)
        labels = sample_labels if options.negatives == "other_class" else None
        self.teacher_bank, self.student_bank = build_memories(
            options, num_samples, seed, labels=labels
        )
        self.label_terms: LabelTerms | None = None
        if options.alpha > 0:
            if num_classes is None:
                raise ValueError("CRDObjective: alpha > 0 needs num_classes (a student classifier)")
            self.label_terms = LabelTerms(student_dim, num_classes, options.alpha, 0.0, seed=seed)
        self.register_buffer("z_teacher", torch.tensor(-1.0))
        self.register_buffer("z_student", torch.tensor(-1.0))
        self._negative_generator = torch.Generator().manual_seed(seed + 2)

    @property
    def classifier(self) -> nn.Linear | None:
        """The student classifier of the ``alpha`` cross-entropy, or None."""
        return None if self.label_terms is None else self.label_terms.classifier

    @property
    def z_estimated(self) -> bool:
        """Whether ``Z`` has been estimated (after the first forward, or from a checkpoint)."""
        return bool(self.z_teacher > 0) and bool(self.z_student > 0)

    def sample_negatives(self, indices: Tensor) -> Tensor:
        """Bank rows outside the batch's ``indices`` per the options.

        ``[K]`` shared or ``[B, K]`` per anchor (see the module docstring).
        """
        options, bank, gen = self.options, self.teacher_bank, self._negative_generator
        if not isinstance(bank, MemoryBank):
            raise ValueError(
                "CRDObjective: under negatives=queue the negatives are the queue's entries"
            )
        k = negatives_per_step(self.num_negatives_effective, self.num_samples, indices)
        if options.sharing == "batch":
            if options.replacement:
                return bank.sample_negatives_per_anchor(k, 1, exclude=indices, generator=gen)[0]
            return bank.sample_negatives(k, exclude=indices, generator=gen)
        if options.negatives == "other_class":
            anchor_labels = bank.labels_of(indices)
            if not options.replacement:
                k = min(k, bank.fewest_other_class_rows(anchor_labels))
            return bank.sample_other_class(k, anchor_labels, options.replacement, generator=gen)
        return bank.sample_negatives_per_anchor(
            k, indices.shape[0], exclude=indices, generator=gen, replacement=options.replacement
        )

    def forward(
        self,
        student: Tensor,
        teacher: Tensor | None,
        labels: Tensor | None,
        indices: Tensor,
        negatives: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """CRD loss of one batch.

        Args:
            student: ``[B, Ds]`` student features (gradient flows).
            teacher: ``[B, Dt]`` frozen teacher features (detached here).
            labels: ``[B]`` classes, read only when ``options.alpha > 0`` (cross-entropy).
            indices: ``[B]`` long dataset indices (bank rows; excluded from the negatives).
            negatives: optional long bank rows used instead of sampling (tests, custom
                samplers): ``[K]`` shared or ``[B, K]`` per anchor.

        Returns:
            ``loss``, ``nce_teacher_anchor``, ``nce_student_anchor`` (scalars) and the detached
            unit-norm ``teacher_embed``, ``student_embed`` ``[B, d]`` for :meth:`update_memory`.
        """
        if teacher is None:
            raise ValueError("CRDObjective: needs teacher features")
        if (
            student.dim() != 2
            or teacher.dim() != 2
            or student.shape[0] != teacher.shape[0]
            or indices.shape != (student.shape[0],)
            or student.shape[0] == 0
        ):
            raise ValueError(
                f"CRDObjective: need student [B, Ds], teacher [B, Dt], indices [B] with B >= 1, "
                f"got {tuple(student.shape)}, {tuple(teacher.shape)}, {tuple(indices.shape)}"
            )
        if not is_integer(indices):
            raise ValueError(
                f"CRDObjective: indices must be an integer tensor, got {indices.dtype}"
            )
        queue = isinstance(self.teacher_bank, NegativeQueue)
        if queue and negatives is not None:
            raise ValueError(
                "CRDObjective: under negatives=queue the negatives are the queue's entries"
            )
        if queue:
            negatives = torch.arange(self.teacher_bank.size, device=self.teacher_bank.memory.device)
        elif negatives is None:
            negatives = self.sample_negatives(indices)
        elif (
            negatives.dim() not in (1, 2)
            or negatives.dtype != torch.long
            or negatives.shape[-1] == 0
            or (negatives.dim() == 2 and negatives.shape[0] != student.shape[0])
        ):
            raise ValueError(
                f"CRDObjective: negatives must be a non-empty [K] or [B, K] long tensor, got "
                f"{negatives.dtype} {tuple(negatives.shape)}"
            )
        dtype = self.teacher_head.linear.weight.dtype
        u = self.teacher_head(teacher.detach().to(dtype))  # [B, d] float32, unit norm
        v = self.student_head(student.to(dtype))
        negatives = negatives.to(self.teacher_bank.memory.device)
        k = negatives.shape[-1]
        with torch.autocast(device_type=u.device.type, enabled=False):
            # [K, d] or [B, K, d], no gradient
            bank_t = self.teacher_bank.memory[negatives].to(u.dtype)
            bank_s = self.student_bank.memory[negatives].to(u.dtype)
            positive = (u * v).sum(1) / self.options.tau  # [B] log of the unnormalised score
            if negatives.dim() == 1:
                # [B, K]: teacher anchors vs the student bank, student anchors vs the teacher's
                negative_t = u @ bank_s.t() / self.options.tau
                negative_s = v @ bank_t.t() / self.options.tau
            else:
                negative_t = torch.bmm(bank_s, u.unsqueeze(-1)).squeeze(-1) / self.options.tau
                negative_s = torch.bmm(bank_t, v.unsqueeze(-1)).squeeze(-1) / self.options.tau
            if isinstance(self.teacher_bank, NegativeQueue):  # an anchor's own older embedding
                own = self.teacher_bank.own_rows(indices)
                negative_t = negative_t.masked_fill(own, -math.inf)
                negative_s = negative_s.masked_fill(own, -math.inf)
            bank = self.teacher_bank
            if self.options.negatives == "other_class" and isinstance(bank, MemoryBank):
                # shared sets still hold same-class rows
                anchor_labels = bank.labels_of(indices).unsqueeze(1)  # [B, 1]
                same = bank.labels_of(negatives) == anchor_labels  # [B, K]
                negative_t = negative_t.masked_fill(same, -math.inf)
                negative_s = negative_s.masked_fill(same, -math.inf)
            if not self.z_estimated:
                self._estimate_z(positive, negative_t, negative_s)
            log_noise = math.log(k / self.num_samples)
            loss_t = nce_loss(
                positive - self.z_teacher.log(), negative_t - self.z_teacher.log(), log_noise
            )
            loss_s = nce_loss(
                positive - self.z_student.log(), negative_s - self.z_student.log(), log_noise
            )
            total = self.options.weight * (loss_t + loss_s)
        out = {
            "loss": total,
            "nce_teacher_anchor": loss_t.detach(),
            "nce_student_anchor": loss_s.detach(),
            "teacher_embed": u.detach(),
            "student_embed": v.detach(),
        }
        if self.label_terms is not None:
            missing = "CRDObjective: alpha > 0 needs the batch's labels"
            out = self.label_terms.added_to(out, student, labels, indices, missing=missing)
        return out

    @torch.no_grad()
    def _estimate_z(self, positive: Tensor, negative_t: Tensor, negative_s: Tensor) -> None:
        """``Z`` per direction from this batch (:func:`~xmodal.objectives.nce.nce_normaliser`)."""
        self.z_teacher.fill_(nce_normaliser(positive, negative_t, self.num_samples))
        self.z_student.fill_(nce_normaliser(positive, negative_s, self.num_samples))

    @torch.no_grad()
    def update_memory(self, indices: Tensor, teacher_embed: Tensor, student_embed: Tensor) -> None:
        """Momentum-update both banks (or enqueue into both queues) with a (gathered) batch.

        Call after the optimiser step.
        """
        self.teacher_bank.record(indices, teacher_embed)
        self.student_bank.record(indices, student_embed)


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"CRDConfig": "CRDOptions"}, globals())
