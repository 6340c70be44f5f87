"""The paper's label terms, ``alpha * CE + beta * KD``, on a linear classifier of the student.

WCoRD's total objective (Chen et al. 2021, eq. of the full loss; ``WCORD.md`` section 3) is
``alpha * L_CE + beta * L_KD + lambda_1 * L_global + lambda_2 * L_local``. ``L_CE`` needs labels
and ``L_KD`` (Hinton's KD) the teacher's logits; both need student logits, which the objective
gets from its own linear classifier on the pooled student features. In the label-free
cross-modal setting both weights are 0 and none of this is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LabelTerms", "kd_loss"]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, batchmean, float32 (``[B, C]`` each)."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


class LabelTerms(nn.Module):
    """``alpha * CE(classifier(student), labels) + beta * kd_loss(kd_head(student), t, T)``.

    The cross-entropy reads the dataset's classes ``C``; KD reads the teacher's ``Ct``. When the
    teacher's logits are over the dataset's classes (``own_teacher_classes`` False and
    ``Ct == C``), one classifier serves both terms (the paper's form); when the teacher has a
    label space of its own (a transfer teacher, or one trained elsewhere with ``Ct != C``), KD
    goes through a separate linear head ``kd_head`` of size ``Ct`` and the classifier, present
    only when ``alpha > 0``, stays over the dataset's classes.

    Args:
        student_dim: student feature size ``Ds``.
        num_classes: the dataset's classes ``C`` (the labels').
        alpha: weight of the cross-entropy on labels (>= 0).
        beta: weight of KD on the teacher's logits (>= 0); needs ``teacher_logits``.
        temperature: KD temperature ``T`` (> 0).
        teacher_logits: ``[N, Ct]`` frozen teacher logits on the training split, indexed by
            dataset index (non-persistent buffer), or None when ``beta == 0``.
        seed: seeds the heads without touching the global RNG.
        own_teacher_classes: the teacher's classes are not the dataset's even where ``Ct == C``.

    Attributes:
        classifier: ``nn.Linear(Ds, C)`` (KD reads it too when shared), or None when
            ``alpha == 0`` and KD has its own head.
        kd_head: ``nn.Linear(Ds, Ct)`` when KD reads the teacher's own classes, else None.
    """

    teacher_logits: Tensor | None

    def __init__(
        self,
        student_dim: int,
        num_classes: int,
        alpha: float,
        beta: float,
        temperature: float = 4.0,
        teacher_logits: Tensor | None = None,
        seed: int = 0,
        own_teacher_classes: bool = False,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or temperature <= 0:
            raise ValueError(
                f"LabelTerms: need alpha, beta >= 0 and temperature > 0, got "
                f"{alpha}, {beta}, {temperature}"
            )
        if beta > 0 and (
            teacher_logits is None or teacher_logits.dim() != 2 or teacher_logits.shape[1] < 1
        ):
            shape = None if teacher_logits is None else tuple(teacher_logits.shape)
            raise ValueError(
                f"LabelTerms: beta > 0 needs the teacher's [N, C] logits, got "
                f"{shape}; set beta = 0 when the teacher has no classifier"
            )
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        teacher_classes = (
            int(teacher_logits.shape[1]) if beta > 0 and teacher_logits is not None else 0
        )
        separate = beta > 0 and (own_teacher_classes or teacher_classes != num_classes)
        if alpha > 0 and num_classes < 1:
            raise ValueError("LabelTerms: alpha > 0 needs the dataset's classes (num_classes >= 1)")
        self.classifier: nn.Linear | None = None
        self.kd_head: nn.Linear | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if alpha > 0 or not separate:  # the shared head is drawn first, as before heads split
                self.classifier = nn.Linear(student_dim, num_classes)
            if separate:
                self.kd_head = nn.Linear(student_dim, teacher_classes)
        logits = None if teacher_logits is None else teacher_logits.detach().float().clone()
        self.register_buffer("teacher_logits", logits, persistent=False)

    def forward(self, student: Tensor, labels: Tensor, indices: Tensor) -> dict[str, Tensor]:
        """``student`` ``[B, Ds]``, ``labels`` ``[B]``, ``indices`` ``[B]`` -> the terms.

        ``{"loss", "ce", "kd"}`` (scalars; ``ce``/``kd`` detached, present when their weight
        is > 0).
        """
        first = self.classifier if self.classifier is not None else self.kd_head
        assert first is not None
        student = student.to(first.weight.dtype)
        logits = self.classifier(student).float() if self.classifier is not None else None
        loss = student.new_zeros((), dtype=torch.float32)
        out: dict[str, Tensor] = {}
        if self.alpha > 0:
            assert logits is not None
            ce = F.cross_entropy(logits, labels.to(logits.device))
            loss = loss + self.alpha * ce
            out["ce"] = ce.detach()
        if self.beta > 0:
            assert self.teacher_logits is not None
            kd_logits = self.kd_head(student).float() if self.kd_head is not None else logits
            assert kd_logits is not None
            kd = kd_loss(
                kd_logits,
                self.teacher_logits[indices.to(self.teacher_logits.device)],
                self.temperature,
            )
            loss = loss + self.beta * kd
            out["kd"] = kd.detach()
        out["loss"] = loss
        return out
