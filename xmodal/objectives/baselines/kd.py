"""Hinton knowledge distillation on logits (Hinton, Vinyals & Dean 2015).

The student has no classifier of its own, so the objective owns one: a linear layer on the
student's pooled features, mapping to the teacher's label space ``C``. With ``t`` the frozen
teacher's logits of the same samples (``ObjectiveContext.teacher_logits[indices]``, a buffer)
and ``s`` the classifier's logits::

    loss = beta * T^2 * KL(softmax(t / T) || softmax(s / T))  +  alpha * CE(s, labels)

KL in nats, summed over classes and averaged over the batch ("batchmean"); ``T^2`` keeps the
gradient scale independent of ``T``. ``alpha = 0`` (default) never reads labels, which is why the
``kd`` method is registered with ``uses_labels=False``; with ``alpha > 0`` the method is no
longer label-free (the labels must live in the teacher's label space).

Logged: ``loss``, ``kd`` (the KL term times ``T^2``, before ``beta``), ``ce`` (when
``alpha > 0``) and ``agreement`` (fraction of samples where the student's and the teacher's
arg-max classes agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.objectives.baselines.config import KDConfig
from xmodal.objectives.task_terms import kd_loss

__all__ = ["KDObjective", "kd_loss"]


class KDObjective(nn.Module):
    """KD objective: a linear student classifier trained to match the teacher's softened logits.

    Args:
        student_dim: student feature size ``Ds``.
        teacher_logits: ``[N, C]`` frozen teacher logits on the training split, indexed by
            dataset index (stored as a non-persistent float32 buffer ``teacher_logits``).
        config: :class:`KDConfig`.
        seed: seeds the classifier's initialisation without touching the global RNG.

    Attributes:
        classifier: ``nn.Linear(Ds, C)``.
    """

    teacher_logits: Tensor

    def __init__(self, student_dim: int, teacher_logits: Tensor, config: KDConfig | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        config = config if config is not None else KDConfig()
        if not (isinstance(student_dim, int) and student_dim >= 1):
            raise ValueError(f"KDObjective: student_dim must be an int >= 1, got {student_dim!r}")
        if teacher_logits is None:
            raise ValueError("KDObjective: needs the teacher's logits (ObjectiveContext.teacher_logits); "
                             "the teacher has no classifier, so use a feature-based method instead")
        if teacher_logits.dim() != 2 or teacher_logits.shape[0] == 0 or teacher_logits.shape[1] < 1:
            raise ValueError(f"KDObjective: teacher_logits must be [N, C], got {tuple(teacher_logits.shape)}")
        if not torch.isfinite(teacher_logits).all():
            raise ValueError("KDObjective: teacher_logits hold non-finite values")
        self.config = config
        self.temperature = float(config.temperature)
        self.alpha = float(config.alpha)
        self.beta = float(config.beta)
        self.num_classes = int(teacher_logits.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.classifier = nn.Linear(student_dim, self.num_classes)
        # Non-persistent: the logits are an input (rebuilt from the teacher), not learned state.
        self.register_buffer("teacher_logits", teacher_logits.detach().float().clone(), persistent=False)

    def forward(self, student: Tensor, teacher: Tensor | None, labels: Tensor,
                indices: Tensor) -> dict[str, Tensor]:
        """``student`` ``[B, Ds]``; ``teacher`` (features) is ignored; ``labels`` ``[B]`` are read
        only when ``alpha > 0``; ``indices`` ``[B]`` select the teacher's logits."""
        if student.dim() != 2 or indices.shape != (student.shape[0],):
            raise ValueError(f"KDObjective: need student [B, D] and indices [B], got "
                             f"{tuple(student.shape)} and {tuple(indices.shape)}")
        dtype = self.classifier.weight.dtype
        logits = self.classifier(student.to(dtype))
        target = self.teacher_logits[indices.to(self.teacher_logits.device)]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            kd = kd_loss(logits, target, self.temperature)
            loss = self.beta * kd
            out: dict[str, Tensor] = {"loss": loss, "kd": kd.detach()}
            if self.alpha > 0:
                ce = F.cross_entropy(logits.float(), labels.to(logits.device))
                out["loss"] = loss + self.alpha * ce
                out["ce"] = ce.detach()
        out["agreement"] = (logits.argmax(1) == target.argmax(1)).float().mean().detach()
        return out
