"""Hinton knowledge distillation on logits (Hinton, Vinyals & Dean 2015).

The objective owns a linear classifier on the student's pooled features, mapping to the
teacher's label space; with ``t`` the frozen teacher's logits and ``s`` the classifier's:
``loss = beta * T^2 * KL(softmax(t / T) || softmax(s / T)) + alpha * CE(s, labels)``.
``alpha = 0`` (default) never reads labels. A teacher with classes of its own (a transfer
teacher) is matched through a KD head of its size; the cross-entropy then has a classifier of
its own over the dataset's classes.

Details: docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.core.checks import holds, non_negative, positive, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.objective import Objective, ObjectiveContext, teacher_has_own_classes
from xmodal.objectives.task_terms import kd_loss

__all__ = ["KDOptions", "KDObjective", "kd_loss"]


@dataclass
class KDOptions:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    ``loss = beta * T^2 * KL(softmax(t / T) || softmax(s / T)) + alpha * CE(s, labels)`` with
    ``t`` the frozen teacher's logits and ``s`` the logits of a linear classifier on the
    student's pooled features.

    Attributes:
        temperature: softmax temperature ``T`` (> 0); 4 as in CRD's benchmark.
        alpha: weight of the cross-entropy on labels (>= 0). 0 (default) keeps the method
            label-free; > 0 reads labels, which the registry entry (``uses_labels=False``) does
            not advertise, so set it only on labelled data and say so in results.
        beta: weight of the distillation (KL) term (>= 0).

    ``alpha`` and ``beta`` cannot both be 0.
    """

    temperature: float = 4.0
    alpha: float = 0.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        require(self, {"temperature": positive(), "alpha": non_negative(), "beta": non_negative()})
        require(
            self,
            {
                "beta": holds(
                    self.alpha > 0 or self.beta > 0, "> 0 when alpha is 0 (one term at least)"
                )
            },
        )


@METHODS.register(
    "kd",
    "Hinton KD: KL to the teacher's softened logits (T^2-scaled) + alpha * CE; reads labels "
    "only when kd.alpha > 0",
)
class KDObjective(Objective, options=KDOptions):
    """KD objective: a linear student head trained to match the teacher's softened logits.

    Args:
        student_dim: student feature size ``Ds``.
        teacher_logits: ``[N, Ct]`` frozen teacher logits on the training split, indexed by
            dataset index (stored as a non-persistent float32 buffer ``teacher_logits``).
        options: :class:`KDOptions`.
        seed: seeds the heads' initialisation without touching the global RNG.
        num_classes: the dataset's classes ``C`` (default: ``Ct``).
        own_teacher_classes: the teacher's classes are not the dataset's even where ``Ct == C``.

    Attributes:
        classifier: ``nn.Linear(Ds, C)``; the head KD reads when the teacher's classes are the
            dataset's. None when they are not and ``alpha == 0`` (no classifier over the
            dataset's classes is trained, so none is saved or scored).
        kd_head: ``nn.Linear(Ds, Ct)`` when the teacher has classes of its own, else None.
        num_classes: the teacher's classes ``Ct``.
    """

    options: KDOptions  # the options it was built with (on the class: their type)
    needs: ClassVar[frozenset[str]] = frozenset({"teacher_logits"})

    @classmethod
    def needs_for(cls, options: Any) -> frozenset[str]:
        """The teacher's logits, and labels for ``alpha > 0``."""
        return cls.needs | ({"labels"} if options.alpha > 0 else set())

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> KDObjective:
        """KD for this set-up; the teacher must have logits on the training split."""
        logits = context.teacher_logits
        if logits is None:
            raise ValueError(
                "needs the teacher's logits on the training split; the teacher has "
                "none, so it has no classifier: use a feature-based baseline "
                "(fitnet, crd, rkd, pkt, infonce)"
            )
        if logits.shape[0] != context.num_samples:
            raise ValueError(
                f"teacher_logits has {logits.shape[0]} rows, the training split "
                f"{context.num_samples}"
            )
        return cls(
            context.student_dim,
            logits,
            options,
            seed=context.seed,
            num_classes=context.num_classes,
            own_teacher_classes=teacher_has_own_classes(context),
        )

    teacher_logits: Tensor

    def __init__(
        self,
        student_dim: int,
        teacher_logits: Tensor,
        options: KDOptions | None = None,
        seed: int = 0,
        *,
        num_classes: int | None = None,
        own_teacher_classes: bool = False,
    ) -> None:
        super().__init__()
        options = options if options is not None else KDOptions()
        if not (isinstance(student_dim, int) and student_dim >= 1):
            raise ValueError(f"KDObjective: student_dim must be an int >= 1, got {student_dim!r}")
        if teacher_logits is None:
            raise ValueError(
                "KDObjective: needs the teacher's logits (ObjectiveContext.teacher_logits); "
                "the teacher has no classifier, so use a feature-based method instead"
            )
        if teacher_logits.dim() != 2 or teacher_logits.shape[0] == 0 or teacher_logits.shape[1] < 1:
            raise ValueError(
                f"KDObjective: teacher_logits must be [N, C], got {tuple(teacher_logits.shape)}"
            )
        if not torch.isfinite(teacher_logits).all():
            raise ValueError("KDObjective: teacher_logits hold non-finite values")
        self.options = options
        self.num_classes = int(teacher_logits.shape[1])
        classes = self.num_classes if num_classes is None else int(num_classes)
        separate = own_teacher_classes or classes != self.num_classes
        if options.alpha > 0 and classes < 1:
            raise ValueError(
                "KDObjective: alpha > 0 needs the dataset's classes (num_classes >= 1)"
            )
        self.classifier: nn.Linear | None = None
        self.kd_head: nn.Linear | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if not separate:  # one head for KD and CE, over the teacher's = the dataset's classes
                self.classifier = nn.Linear(student_dim, self.num_classes)
            else:
                self.kd_head = nn.Linear(student_dim, self.num_classes)
                if options.alpha > 0:
                    self.classifier = nn.Linear(student_dim, classes)
        # Non-persistent: the logits are an input (rebuilt from the teacher), not learned state.
        self.register_buffer(
            "teacher_logits", teacher_logits.detach().float().clone(), persistent=False
        )

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """``loss``, ``kd``, ``agreement`` (and ``ce`` when ``alpha > 0``) of one batch.

        Args:
            student: ``[B, Ds]`` student features.
            teacher: the teacher's features, ignored (KD reads its logits).
            labels: ``[B]`` classes, read only when ``alpha > 0``.
            indices: ``[B]`` dataset indices, selecting the teacher's logits.
        """
        if student.dim() != 2 or indices.shape != (student.shape[0],):
            raise ValueError(
                f"KDObjective: need student [B, D] and indices [B], got "
                f"{tuple(student.shape)} and {tuple(indices.shape)}"
            )
        if labels is None and self.options.alpha > 0:
            raise ValueError("KDObjective: alpha > 0 needs the batch's labels")
        head = self.kd_head if self.kd_head is not None else self.classifier
        assert head is not None
        student = student.to(head.weight.dtype)
        logits = head(student)  # [B, Ct]
        target = self.teacher_logits[indices.to(self.teacher_logits.device)]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            kd = kd_loss(logits, target, self.options.temperature)
            loss = self.options.beta * kd
            out: dict[str, Tensor] = {"loss": loss, "kd": kd.detach()}
            if self.options.alpha > 0:
                assert self.classifier is not None
                class_logits = (
                    logits if self.kd_head is None else self.classifier(student)
                )  # [B, C]
                assert labels is not None  # checked above
                ce = F.cross_entropy(class_logits.float(), labels.to(logits.device))
                out["loss"] = loss + self.options.alpha * ce
                out["ce"] = ce.detach()
        out["agreement"] = (logits.argmax(1) == target.argmax(1)).float().mean().detach()
        return out


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"KDConfig": "KDOptions"}, globals())
