"""Distillation methods by name: the ``losses`` registry.

A method turns a student's pooled features (and the frozen teacher's, and labels where they
exist) into a training loss. Each registered entry is a :class:`Method`; its ``build`` returns
an ``nn.Module`` whose forward is::

    forward(student [B, Ds], teacher [B, Dt] | None, labels [B] long, indices [B] long) -> dict

with at least ``"loss"`` (a scalar). Objectives with memory banks also return detached
embeddings and expose ``update_memory(indices, teacher_embed, student_embed)``, which the
training loop calls after each optimiser step with tensors gathered from every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from xmodal.core.registry import METHODS
from xmodal.objectives.task_terms import LabelTerms
from xmodal.objectives.wcord import WCoRDLoss


@dataclass
class ObjectiveContext:
    """What an objective needs to know: feature dims, training-set size, classes, seed, and the
    frozen teacher's train-split logits where the teacher has a classifier (for KD)."""

    student_dim: int
    teacher_dim: int | None
    num_samples: int
    num_classes: int
    seed: int = 0
    teacher_logits: Tensor | None = None  # [N, C] frozen teacher logits on the train split
    train_labels: Tensor | None = None  # [N] train-split labels, for label-aware negatives
    batch_size: int | None = None  # training batch size, when known


def check_room_for_negatives(ctx: ObjectiveContext, method: str) -> None:
    """Memory-bank methods draw negatives outside the batch: a batch holding the whole training
    set leaves none. Fail at build time with the fix, not mid-training."""
    if ctx.batch_size is not None and ctx.batch_size >= ctx.num_samples:
        raise ValueError(f"'{method}' draws negatives from training samples outside the batch, "
                         f"but the batch size {ctx.batch_size} covers all {ctx.num_samples}: "
                         "lower distill.optim.batch_size below the training-set size")


@dataclass
class WCoRDConfig:
    """WCoRD hyperparameters (defaults from ``WCORD.md``; every one is written to results).

    Attributes:
        embed_dim: shared projection size d.
        num_negatives: K, negatives per batch from the memory bank (capped at N - 1).
        tau: critic temperature.
        momentum: memory-bank momentum mu.
        lambda_global, lambda_local: weights of the dual (global) and primal (local) terms.
        lipschitz: ``spectral`` (spectrally normalised heads projected onto the unit ball, and
            critic weights: the critic is 1/tau-Lipschitz in the raw features),
            ``gradient_penalty`` (one-sided penalty, weight ``gp_weight``) or ``none`` (heads
            onto the sphere: the InfoNCE/CRD-like ablation).
        critic: ``dot`` (<u, v> / tau), ``bilinear`` (u^T W v / tau) or ``mlp`` (MLP on [u; v],
            hidden width ``critic_hidden``), all on the projected embeddings.
        negatives: ``uniform``, ``other_class`` (mask same-class negatives; uses labels), or
            ``queue`` (all entries of a FIFO queue of the last K gathered embeddings: no N-row
            banks; sharing ``batch``).
        bank_dtype: storage of the banks or queues, ``float32``, ``bfloat16`` or ``float16``.
        sharing: ``batch`` (one set of K negatives per batch) or ``anchor`` (K per anchor, drawn
            with replacement; memory B*K*d*4 bytes per side).
        sinkhorn_eps, sinkhorn_iters, sinkhorn_tol: entropic OT for the local term.
        local_solver: ``sinkhorn`` (entropic) or ``ipot`` (approaches the exact plan; step
            ``ipot_beta`` in cost units).
        local_scope: ``process`` (plan over each process's batch) or ``global`` (embeddings
            all-gathered with autograd across processes; plan over the global batch).
        alpha, beta: weights of the paper's cross-entropy on labels and of Hinton's KD on the
            teacher's logits (temperature ``kd_temperature``), both on a linear classifier of
            the student's features: the total is ``alpha * CE + beta * KD + lambda_global *
            global + lambda_local * local``. 0 (default) in the label-free cross-modal setting;
            the compression setting (``cifar100``) sets them like the paper.
    """

    embed_dim: int = 128
    num_negatives: int = 16384
    tau: float = 0.07
    momentum: float = 0.5
    lambda_global: float = 0.8
    lambda_local: float = 0.1
    lipschitz: Literal["spectral", "gradient_penalty", "none"] = "spectral"
    gp_weight: float = 10.0
    critic: Literal["dot", "bilinear", "mlp"] = "dot"
    critic_hidden: int = 256
    negatives: Literal["uniform", "other_class", "queue"] = "uniform"
    bank_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sharing: Literal["batch", "anchor"] = "batch"
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 100
    sinkhorn_tol: float = 1e-3
    local_solver: Literal["sinkhorn", "ipot"] = "sinkhorn"
    ipot_beta: float = 1.0
    local_scope: Literal["process", "global"] = "process"
    alpha: float = 0.0
    beta: float = 0.0
    kd_temperature: float = 4.0

    def __post_init__(self) -> None:
        checks = {
            "embed_dim": self.embed_dim >= 1, "num_negatives": self.num_negatives >= 1,
            "gp_weight": self.gp_weight >= 0, "critic_hidden": self.critic_hidden >= 1,
            "tau": self.tau > 0, "momentum": 0 <= self.momentum < 1,
            "lambda_global": self.lambda_global >= 0, "lambda_local": self.lambda_local >= 0,
            "sinkhorn_eps": self.sinkhorn_eps > 0, "sinkhorn_iters": self.sinkhorn_iters >= 1,
            "sinkhorn_tol": self.sinkhorn_tol > 0, "ipot_beta": self.ipot_beta > 0,
            "alpha": self.alpha >= 0, "beta": self.beta >= 0, "kd_temperature": self.kd_temperature > 0,
        }
        if self.negatives == "queue" and self.sharing != "batch":
            raise ValueError("negatives=queue scores every anchor against the whole queue; set sharing=batch")
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} "
                             "(need embed_dim, num_negatives, critic_hidden, sinkhorn_iters >= 1; gp_weight >= 0; tau, sinkhorn_eps, "
                             "sinkhorn_tol, kd_temperature > 0; 0 <= momentum < 1; lambdas, alpha, beta >= 0)")


@dataclass
class Method:
    """A registered distillation method.

    Attributes:
        trains: False for ``none`` (the random-init probe floor).
        uses_teacher: whether the objective reads teacher features.
        uses_labels: whether it reads labels (then it is not label-free distillation).
        build: ``(context, method_config) -> objective module``, or None when ``trains`` is False.
        config_key: which section of the distill config holds its hyperparameters.
    """

    name: str
    description: str
    trains: bool = True
    uses_teacher: bool = True
    uses_labels: bool = False
    build: Callable[[ObjectiveContext, Any], nn.Module] | None = None
    config_key: str | None = None
    hparams: Callable[[Any], dict[str, Any]] = field(default=lambda cfg: {})


class CrossEntropyObjective(nn.Module):
    """Supervised training: a linear classifier on the pooled features, cross-entropy loss."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, student: Tensor, teacher: Tensor | None, labels: Tensor,
                indices: Tensor) -> dict[str, Tensor]:
        logits = self.classifier(student)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach()}


class WCoRDObjective(nn.Module):
    """Adapter from the method interface to :class:`~xmodal.objectives.wcord.WCoRDLoss`, plus
    the paper's label terms ``alpha * CE + beta * KD`` when ``label_terms`` is given."""

    def __init__(self, loss: WCoRDLoss, label_terms: LabelTerms | None = None) -> None:
        super().__init__()
        self.wcord = loss
        self.label_terms = label_terms

    @property
    def classifier(self) -> nn.Linear | None:
        """The student classifier of the label terms, or None."""
        return None if self.label_terms is None else self.label_terms.classifier

    def forward(self, student: Tensor, teacher: Tensor | None, labels: Tensor,
                indices: Tensor) -> dict[str, Tensor]:
        if teacher is None:
            raise ValueError("WCoRD needs teacher features")
        out = self.wcord(teacher, student, indices, labels=labels)
        if self.label_terms is not None:
            terms = self.label_terms(student, labels, indices)
            out = {**out, **terms, "loss": out["loss"] + terms["loss"]}
        return out

    @torch.no_grad()
    def update_memory(self, indices: Tensor, teacher_embed: Tensor, student_embed: Tensor) -> None:
        self.wcord.update_memory(indices, teacher_embed, student_embed)


def _wcord_builder(lambda_global: float | None, lambda_local: float | None):
    def build(ctx: ObjectiveContext, cfg: WCoRDConfig) -> nn.Module:
        kwargs = asdict(cfg)
        if lambda_global is not None:
            kwargs["lambda_global"] = lambda_global
        if lambda_local is not None:
            kwargs["lambda_local"] = lambda_local
        assert ctx.teacher_dim is not None
        if kwargs["lambda_global"] > 0:
            check_room_for_negatives(ctx, "wcord")
        labels = None
        if cfg.negatives == "other_class":
            if ctx.train_labels is None:
                raise ValueError("wcord.negatives=other_class needs labels; use negatives=uniform")
            labels = ctx.train_labels
        alpha, beta, temperature = kwargs.pop("alpha"), kwargs.pop("beta"), kwargs.pop("kd_temperature")
        terms = None
        if alpha > 0 or beta > 0:
            if beta > 0 and ctx.teacher_logits is None:
                raise ValueError("wcord.beta > 0 needs the teacher's logits; the teacher has no "
                                 "classifier here, so set wcord.beta = 0")
            classes = ctx.teacher_logits.shape[1] if beta > 0 else ctx.num_classes
            if alpha > 0 and classes != ctx.num_classes:
                raise ValueError(f"wcord.alpha > 0 and wcord.beta > 0: the teacher's {classes} classes "
                                 f"differ from the dataset's {ctx.num_classes}; set one of them to 0")
            terms = LabelTerms(ctx.student_dim, classes, alpha, beta, temperature,
                               teacher_logits=ctx.teacher_logits if beta > 0 else None, seed=ctx.seed)
        return WCoRDObjective(WCoRDLoss(teacher_dim=ctx.teacher_dim, student_dim=ctx.student_dim,
                                        num_samples=ctx.num_samples, seed=ctx.seed,
                                        sample_labels=labels, **kwargs), terms)

    return build


def _wcord_hparams(lambda_global: float | None, lambda_local: float | None):
    def hparams(cfg: WCoRDConfig) -> dict[str, Any]:
        out = asdict(cfg)
        if lambda_global is not None:
            out["lambda_global"] = lambda_global
        if lambda_local is not None:
            out["lambda_local"] = lambda_local
        return out

    return hparams


def register_method(method: Method) -> Method:
    METHODS.add(method.name, method, method.description)
    return method


register_method(Method("none", "no training: the random-init student (probe floor)",
                       trains=False, uses_teacher=False))
register_method(Method("supervised", "student trained with labels (cross-entropy): upper reference",
                       uses_teacher=False, uses_labels=True,
                       build=lambda ctx, cfg: CrossEntropyObjective(ctx.student_dim, ctx.num_classes)))
register_method(Method("wcord", "WCoRD: global (dual) + local (primal) Wasserstein terms",
                       build=_wcord_builder(None, None), config_key="wcord",
                       hparams=_wcord_hparams(None, None)))
register_method(Method("wcord-global", "WCoRD dual (global contrastive) term only",
                       build=_wcord_builder(None, 0.0), config_key="wcord",
                       hparams=_wcord_hparams(None, 0.0)))
register_method(Method("wcord-local", "WCoRD primal (in-batch optimal transport) term only",
                       build=_wcord_builder(0.0, None), config_key="wcord",
                       hparams=_wcord_hparams(0.0, None)))
