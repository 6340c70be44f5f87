"""Register the baselines in the ``losses`` registry (imported once by the package).

Each entry's ``config_key`` names its section of the pipeline's distill config (``kd``,
``fitnet``, ``crd``, ``rkd``, ``pkt``) and its ``hparams`` are ``dataclasses.asdict`` of that
section, so every results file records them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from xmodal.objectives.baselines.config import CRDConfig, KDConfig
from xmodal.objectives.baselines.crd import CRDObjective
from xmodal.objectives.baselines.fitnet import FitNetObjective
from xmodal.objectives.baselines.kd import KDObjective
from xmodal.objectives.baselines.pkt import PKTObjective
from xmodal.objectives.baselines.rkd import RKDObjective
from xmodal.objectives.methods import (Method, ObjectiveContext, check_room_for_negatives,
                                       register_method)

__all__ = ["BASELINE_METHODS"]


def _hparams(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def _teacher_dim(ctx: ObjectiveContext, name: str) -> int:
    if ctx.teacher_dim is None:
        raise ValueError(f"method '{name}' needs teacher features (ObjectiveContext.teacher_dim is None)")
    return ctx.teacher_dim


def _build_kd(ctx: ObjectiveContext, cfg: KDConfig) -> KDObjective:
    if ctx.teacher_logits is None:
        raise ValueError("method 'kd' needs the teacher's logits on the training split "
                         "(ObjectiveContext.teacher_logits); the teacher has none, so it has no "
                         "classifier: use a feature-based baseline (fitnet, crd, rkd, pkt)")
    if ctx.teacher_logits.shape[0] != ctx.num_samples:
        raise ValueError(f"method 'kd': teacher_logits has {ctx.teacher_logits.shape[0]} rows, "
                         f"the training split {ctx.num_samples}")
    if cfg.alpha > 0 and ctx.teacher_logits.shape[1] != ctx.num_classes:
        raise ValueError(f"method 'kd' with alpha > 0: the teacher's {ctx.teacher_logits.shape[1]} classes "
                         f"differ from the dataset's {ctx.num_classes}; set kd.alpha = 0")
    return KDObjective(ctx.student_dim, ctx.teacher_logits, cfg, seed=ctx.seed)


def _build_crd(ctx: ObjectiveContext, cfg: CRDConfig) -> CRDObjective:
    check_room_for_negatives(ctx, "crd")
    if cfg.negatives == "other_class" and ctx.train_labels is None:
        raise ValueError("crd.negatives=other_class needs labels; use crd.negatives=uniform")
    return CRDObjective(_teacher_dim(ctx, "crd"), ctx.student_dim, ctx.num_samples, cfg,
                        seed=ctx.seed, sample_labels=ctx.train_labels, num_classes=ctx.num_classes)


BASELINE_METHODS: tuple[Method, ...] = (
    register_method(Method(
        "kd", "Hinton KD: KL to the teacher's softened logits (T^2-scaled) + alpha * CE; "
        "reads labels only when kd.alpha > 0",
        uses_teacher=True, uses_labels=False,  # alpha = 0 by default; alpha > 0 makes it supervised
        build=_build_kd, config_key="kd", hparams=_hparams)),
    register_method(Method(
        "fitnet", "FitNet: MSE from a linear connector on the student's features to the teacher's",
        build=lambda ctx, cfg: FitNetObjective(ctx.student_dim, _teacher_dim(ctx, "fitnet"), cfg,
                                               seed=ctx.seed),
        config_key="fitnet", hparams=_hparams)),
    register_method(Method(
        "crd", "CRD: NCE against memory-bank negatives, Z estimated once from the first batch",
        build=_build_crd,
        config_key="crd", hparams=_hparams)),
    register_method(Method(
        "rkd", "RKD: relational distance + angle matching of the batch's features",
        build=lambda ctx, cfg: RKDObjective(cfg), config_key="rkd", hparams=_hparams)),
    register_method(Method(
        "pkt", "PKT: KL between cosine-kernel conditional probabilities of teacher and student",
        build=lambda ctx, cfg: PKTObjective(cfg), config_key="pkt", hparams=_hparams)),
)
