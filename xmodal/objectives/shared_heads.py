"""An objective's trained projection heads, kept after training as plain affine maps.

Maps into the shared embedding space (``heads.pt`` beside a student's ``encoder.pt``).

Objectives that contrast teacher and student embeddings (``wcord*``, ``crd``, ``infonce``) own a
teacher head ``h_T`` and a student head ``h_S`` (:class:`~xmodal.objectives.critic.ProjectionHead`:
a linear layer, spectrally normalised or not, then the unit ball or sphere). Training feeds
``h_T`` the teacher features *standardised* over the train split
(:func:`xmodal.training.train.standardise_features`), and ``h_S`` the raw student embeddings.
:func:`heads_state` keeps what reproduces both maps: each head's effective weight and bias (a
spectrally normalised weight as evaluated, ``W / sigma``), and the teacher standardisation.
The final projection onto the ball or sphere only rescales an embedding, so cosine similarities
in the shared space need the affine maps alone.

The state is a dict of tensors and strings, read back with ``torch.load(weights_only=True)``
(:meth:`SharedHeads.from_state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.objectives.critic import ProjectionHead

__all__ = ["FORMAT", "HEADS_FILE", "SharedHeads", "has_heads", "heads_state"]

#: the file beside a trained student's ``encoder.pt`` that holds its objective's heads
HEADS_FILE = "heads.pt"
FORMAT = "xmodal-heads"
VERSION = 1


def has_heads(objective: Any) -> bool:
    """Whether ``objective`` maps teacher and student into a shared space.

    That is, whether it has a :class:`ProjectionHead` ``teacher_head`` and ``student_head``.
    """
    return isinstance(getattr(objective, "teacher_head", None), ProjectionHead) and isinstance(
        getattr(objective, "student_head", None), ProjectionHead
    )


def _affine(head: ProjectionHead) -> dict[str, Tensor]:
    """The head's linear layer as evaluated: ``{"weight": [d, D], "bias": [d]}`` (float32, CPU)."""
    was_training = head.training
    head.eval()  # a spectral norm's weight without a power iteration: W / sigma(u, v) as stored
    try:
        with torch.no_grad():
            weight = head.linear.weight.detach().float().cpu().clone()
            linear_bias = head.linear.bias
            bias = (
                torch.zeros(weight.shape[0])
                if linear_bias is None
                else linear_bias.detach().float().cpu().clone()
            )
    finally:
        head.train(was_training)
    return {"weight": weight, "bias": bias}


def heads_state(
    objective: nn.Module,
    method: str,
    teacher_mean: Tensor,
    teacher_std: Tensor,
    teacher_norm: float,
) -> dict[str, Any] | None:
    """What :class:`SharedHeads` rebuilds ``objective``'s heads from, or None when it has none.

    Args:
        objective: the trained objective.
        method: the objective's registered name (kept for messages).
        teacher_mean: ``[Dt]``, the mean training subtracted from the teacher features before
            ``h_T``.
        teacher_std: ``[Dt]``, the standard deviation it divided them by.
        teacher_norm: mean L2 norm of the raw teacher train features (the scale a vector from
            the teacher's embedding space is given before standardising, see
            :mod:`xmodal.evaluation.zero_shot_probe`).
    """
    teacher_head = getattr(objective, "teacher_head", None)
    student_head = getattr(objective, "student_head", None)
    if not (isinstance(teacher_head, ProjectionHead) and isinstance(student_head, ProjectionHead)):
        return None  # the same test as has_heads, written out so the types narrow
    teacher, student = _affine(teacher_head), _affine(student_head)
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": method,
        "onto": teacher_head.onto,
        "teacher_weight": teacher["weight"],
        "teacher_bias": teacher["bias"],
        "student_weight": student["weight"],
        "student_bias": student["bias"],
        "teacher_mean": teacher_mean.detach().float().cpu().clone(),
        "teacher_std": teacher_std.detach().float().cpu().clone(),
        "teacher_norm": torch.tensor(float(teacher_norm)),
    }


@dataclass
class SharedHeads:
    """The affine parts of an objective's heads (``d``: shared embedding size).

    Attributes:
        teacher_weight, teacher_bias: ``[d, Dt]``, ``[d]``.
        student_weight, student_bias: ``[d, Ds]``, ``[d]``.
        teacher_mean, teacher_std: ``[Dt]``, applied to teacher features before ``h_T``.
        teacher_norm: mean L2 norm of the raw teacher train features.
        method: the objective that trained them.
    """

    teacher_weight: Tensor
    teacher_bias: Tensor
    student_weight: Tensor
    student_bias: Tensor
    teacher_mean: Tensor
    teacher_std: Tensor
    teacher_norm: float
    method: str = ""

    @classmethod
    def from_state(cls, state: Any, where: str = "heads") -> SharedHeads:
        """Check and wrap a :func:`heads_state` dict; ``where`` names it in errors."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f'{where}: not an xmodal heads file (no "format": "{FORMAT}")')
        if int(state.get("version", 0)) > VERSION:
            raise ValueError(
                f"{where}: heads format version {state['version']}; this xmodal reads "
                f"up to {VERSION}: upgrade xmodal"
            )
        names = (
            "teacher_weight",
            "teacher_bias",
            "student_weight",
            "student_bias",
            "teacher_mean",
            "teacher_std",
            "teacher_norm",
        )
        missing = [n for n in names if not isinstance(state.get(n), Tensor)]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        heads = cls(
            teacher_weight=state["teacher_weight"].float(),
            teacher_bias=state["teacher_bias"].float(),
            student_weight=state["student_weight"].float(),
            student_bias=state["student_bias"].float(),
            teacher_mean=state["teacher_mean"].float(),
            teacher_std=state["teacher_std"].float(),
            teacher_norm=float(state["teacher_norm"]),
            method=str(state.get("method", "")),
        )
        d, dt = heads.teacher_weight.shape
        if (
            heads.teacher_bias.shape != (d,)
            or heads.student_weight.dim() != 2
            or heads.student_weight.shape[0] != d
            or heads.student_bias.shape != (d,)
            or heads.teacher_mean.shape != (dt,)
            or heads.teacher_std.shape != (dt,)
        ):
            raise ValueError(
                f"{where}: inconsistent shapes (teacher {tuple(heads.teacher_weight.shape)}, "
                f"student {tuple(heads.student_weight.shape)})"
            )
        return heads

    @property
    def teacher_dim(self) -> int:
        """``Dt``."""
        return int(self.teacher_weight.shape[1])

    @property
    def student_dim(self) -> int:
        """``Ds``."""
        return int(self.student_weight.shape[1])

    def embed_teacher(self, features: Tensor) -> Tensor:
        """Raw teacher-space vectors ``[N, Dt]`` -> shared space ``[N, d]``.

        Standardised, then ``h_T``'s affine map; not projected onto the ball or sphere.
        """
        x = (features.float() - self.teacher_mean) / self.teacher_std
        return x @ self.teacher_weight.T + self.teacher_bias

    def embed_student(self, features: Tensor) -> Tensor:
        """Student embeddings ``[N, Ds]`` -> shared space ``[N, d]`` (``h_S``'s affine map)."""
        return features.float() @ self.student_weight.T + self.student_bias
