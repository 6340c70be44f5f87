"""WCoRD: Wasserstein Contrastive Representation Distillation (Chen et al., CVPR 2021).

The loss aligns teacher and student embeddings by two views of the Wasserstein distance: a
**global** dual term (a contrastive bound with a ``1/tau``-Lipschitz critic scoring each pair
against memory negatives) and a **local** primal term (entropic optimal transport within the
batch). ``lambda_global * global + lambda_local * local (+ gradient penalty)``, plus the paper's
optional label terms ``alpha * CE + beta * KD``. Registered as ``wcord``, ``wcord-global`` and
``wcord-local``; options :class:`WCoRDOptions` (config section ``distill.wcord``). The terms, the
options and their measured behaviour are documented in ``docs/wcord.md``.

Training-loop contract: ``forward`` reads the memory, never writes it; after the optimiser step
call :meth:`WCoRDLoss.update_memory` with indices and embeddings gathered from every process.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from xmodal.core.checks import (
    at_least,
    holds,
    literal_rules,
    non_negative,
    positive,
    require,
    require_ints,
)
from xmodal.core.deprecation import former_names
from xmodal.core.registry import METHODS
from xmodal.objectives.critic import Critic, ProjectionHead, build_critic
from xmodal.objectives.gather import all_gather_with_grad
from xmodal.objectives.memory_bank import MemoryBank, is_integer, negatives_per_step
from xmodal.objectives.memory_options import MemoryOptions
from xmodal.objectives.nce import nce_loss, nce_normaliser
from xmodal.objectives.negative_memory import Memory, build_memories
from xmodal.objectives.negative_queue import NegativeQueue
from xmodal.objectives.objective import (
    Objective,
    ObjectiveContext,
    check_room_for_negatives,
    teacher_has_own_classes,
)
from xmodal.objectives.sinkhorn import TransportNotConverged, TransportOptions, TransportResult
from xmodal.objectives.task_terms import LabelTerms
from xmodal.objectives.transport import Solver, solver_for

__all__ = ["WCoRDOptions", "WCoRDLoss", "WCoRDGlobal", "WCoRDLocal"]


@dataclass
class WCoRDOptions(TransportOptions, MemoryOptions):
    """WCoRD's options (defaults from ``WCORD.md``; every one is written to the results).

    Beside its own, the memory's (:class:`~xmodal.objectives.memory_options.MemoryOptions`:
    ``embed_dim``, ``num_negatives``, ``tau``, ``momentum``, ``negatives``, ``sharing``,
    ``bank_dtype``) and the local term's optimal transport
    (:class:`~xmodal.objectives.sinkhorn.TransportOptions`: ``sinkhorn_eps``,
    ``sinkhorn_iters``, ``sinkhorn_tol``, ``local_solver``, ``ipot_beta``). The memories and
    the solver take this object as it is, so each value keeps its name from the config key to
    the line that uses it, and each range is checked once, by the dataclass that declares it.

    Attributes:
        estimator: form of the global term's contrast: ``nce`` (CRD's binary NCE with a
            normaliser ``Z`` estimated once, the paper's form; see docs/wcord-paper-audit.md) or
            ``infonce`` (a softmax over the positive and the ``K`` negatives).
        lambda_global: weight of the dual term (>= 0; not both weights 0).
        lambda_local: weight of the primal term (>= 0).
        lipschitz: ``spectral`` (spectrally normalised heads onto the unit ball and critic),
            ``gradient_penalty`` (one-sided, weight ``gp_weight``) or ``none`` (heads onto the
            sphere: the InfoNCE/CRD-like ablation).
        gp_weight: weight of the gradient penalty (>= 0).
        critic: ``dot`` (<u, v>/tau), ``bilinear`` (u^T W v/tau) or ``mlp`` (width
            ``critic_hidden``).
        critic_hidden: hidden width of the ``mlp`` critic (>= 1).
        local_scope: ``process`` (plan over each process's batch) or ``global`` (over the
            gathered batch).
        alpha: weight of the paper's cross-entropy on labels, through a linear student
            classifier (0: label-free).
        beta: weight of the paper's KD on the teacher's logits (0: none).
        kd_temperature: KD's temperature (> 0).
    """

    estimator: Literal["nce", "infonce"] = "nce"
    lambda_global: float = 0.8
    lambda_local: float = 0.1
    lipschitz: Literal["spectral", "gradient_penalty", "none"] = "spectral"
    gp_weight: float = 10.0
    critic: Literal["dot", "bilinear", "mlp"] = "dot"
    critic_hidden: int = 256
    local_scope: Literal["process", "global"] = "process"
    alpha: float = 0.0
    beta: float = 0.0
    kd_temperature: float = 4.0

    def __post_init__(self) -> None:
        require(
            self,
            {
                **self.memory_rules(),
                **self.transport_rules(),
                "lambda_global": non_negative(),
                "lambda_local": non_negative(),
                "gp_weight": non_negative(),
                "critic_hidden": at_least(1),
                "alpha": non_negative(),
                "beta": non_negative(),
                "kd_temperature": positive(),
                **literal_rules(self),
            },
        )
        require(
            self,
            {
                "lambda_local": holds(
                    self.lambda_global > 0 or self.lambda_local > 0,
                    "> 0 when lambda_global is 0 (one term at least)",
                ),
                **self.memory_relations(),
            },
        )


@METHODS.register("wcord", "WCoRD: global (dual) + local (primal) Wasserstein terms")
class WCoRDLoss(Objective, options=WCoRDOptions):
    """WCoRD with its projection heads, critic and memory (banks or queues).

    Args:
        student_dim: student feature size ``Ds``.
        teacher_dim: teacher feature size ``Dt``.
        num_samples: training-set size ``N`` (bank rows), >= 2.
        options: :class:`WCoRDOptions`, kept as ``options`` (the memories, critic and solver
            read it as it is).
        seed: seeds heads, critic, banks and negative sampling (the global RNG is untouched).
        sample_labels: ``[N]`` class of every training sample (``negatives=other_class``).
        label_terms: the ``alpha * CE + beta * KD`` terms (built by :meth:`build`), or None.
        **overrides: single fields replacing those of ``options``
            (``WCoRDLoss(32, 64, 1000, tau=0.1)``).

    Attributes:
        teacher_head, student_head: :class:`ProjectionHead` ``h_T``, ``h_S``.
        critic: the critic ``g``.
        solver: the local term's OT solver, the one ``options.local_solver`` names (picked once;
            :func:`~xmodal.objectives.transport.solver_for`), called with ``options``.
        teacher_bank, student_bank: :class:`MemoryBank` ``[N, d]`` or :class:`NegativeQueue`
            ``[K, d]``; None when ``lambda_global == 0``.
        last_transport: the local term's last :class:`TransportResult`, or None.
        z_teacher, z_student: buffers (scalars), the NCE normalisers ``Z`` of the teacher- and
            the student-anchored scores (``estimator="nce"``); ``-1`` until the first forward.
    """

    z_teacher: Tensor
    z_student: Tensor

    shared_heads: ClassVar[bool] = True  # teacher_head, student_head
    options: WCoRDOptions  # the options it was built with (on the class: their type)
    options_key: ClassVar[str] = "wcord"
    fixed: ClassVar[dict[str, Any]] = {}
    """Option values a variant pins (``wcord-global``: ``lambda_local = 0``)."""

    @classmethod
    def resolved(cls, options: WCoRDOptions) -> WCoRDOptions:
        """``options`` with the values this variant pins (the same object when they hold)."""
        if all(getattr(options, name) == value for name, value in cls.fixed.items()):
            return options
        return dataclasses.replace(options, **cls.fixed)

    @classmethod
    def hparams_of(cls, options: Any) -> dict[str, Any]:
        """Every option by name, with the values this variant pins."""
        return dataclasses.asdict(cls.resolved(options))

    @classmethod
    def needs_for(cls, options: Any) -> frozenset[str]:
        """The teacher; labels for ``alpha`` or other-class negatives; logits for ``beta``."""
        options = cls.resolved(options)
        needs = {"teacher"}
        if options.alpha > 0 or (options.negatives == "other_class" and options.lambda_global > 0):
            needs.add("labels")
        if options.beta > 0:
            needs.add("teacher_logits")
        return frozenset(needs)

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> WCoRDLoss:
        """WCoRD for this set-up, holding ``options`` (with the label terms when on)."""
        options = cls.resolved(options)
        if context.teacher_dim is None:
            raise ValueError("needs teacher features")
        if options.lambda_global > 0 and options.negatives != "queue":
            check_room_for_negatives(context, "wcord")
        labels = None
        if options.negatives == "other_class":
            if context.train_labels is None:
                raise ValueError("wcord.negatives=other_class needs labels; use negatives=uniform")
            labels = context.train_labels
        terms = None
        if options.alpha > 0 or options.beta > 0:
            logits = context.teacher_logits if options.beta > 0 else None
            if options.beta > 0 and logits is None:
                raise ValueError(
                    "wcord.beta > 0 needs the teacher's logits; the teacher has no "
                    "classifier here, so set wcord.beta = 0"
                )
            # KD over the teacher's own classes gets a head of their size; CE the dataset's
            terms = LabelTerms(
                context.student_dim,
                context.num_classes,
                options.alpha,
                options.beta,
                options.kd_temperature,
                teacher_logits=logits,
                seed=context.seed,
                own_teacher_classes=teacher_has_own_classes(context),
            )
        return cls(
            context.student_dim,
            context.teacher_dim,
            context.num_samples,
            options,
            seed=context.seed,
            sample_labels=labels,
            label_terms=terms,
        )

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        num_samples: int,
        options: WCoRDOptions | None = None,
        *,
        seed: int = 0,
        sample_labels: Tensor | None = None,
        label_terms: LabelTerms | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        require_ints(
            "WCoRDLoss",
            ("student_dim", student_dim, 1),
            ("teacher_dim", teacher_dim, 1),
            ("num_samples", num_samples, 2),
            ("seed", seed, 0),
        )
        options = options if options is not None else WCoRDOptions()
        if overrides:
            try:
                options = dataclasses.replace(options, **overrides)
            except TypeError as exc:  # an override that is no option
                raise ValueError(f"WCoRDLoss: {exc}") from None
        options = self.resolved(options)
        if sample_labels is not None:
            if not isinstance(sample_labels, Tensor) or sample_labels.shape != (num_samples,):
                got = (
                    tuple(sample_labels.shape)
                    if isinstance(sample_labels, Tensor)
                    else type(sample_labels)
                )
                raise ValueError(
                    f"WCoRDLoss: sample_labels must be a [num_samples={num_samples}] tensor, "
                    f"got {got}"
                )
            if not is_integer(sample_labels):
                raise ValueError(
                    f"WCoRDLoss: sample_labels must be an integer tensor, got {sample_labels.dtype}"
                )
        elif options.negatives == "other_class":
            raise ValueError(
                "WCoRDLoss: negatives='other_class' needs sample_labels (the [N] labels of the "
                "dataset)"
            )

        self.options = options
        self.solver: Solver = solver_for(options)  # the local term's, picked once
        self._hparams: dict[str, Any] = dict(
            student_dim=student_dim,
            teacher_dim=teacher_dim,
            num_samples=num_samples,
            **dataclasses.asdict(options),
            seed=seed,
        )
        self.num_samples = num_samples
        self.num_negatives_effective = negatives_per_step(options.num_negatives, num_samples)
        self.label_terms = label_terms

        spectral = options.lipschitz == "spectral"
        # The ball keeps the heads 1-Lipschitz; the sphere (1/|z|-Lipschitz) only for the ablation.
        onto = "sphere" if options.lipschitz == "none" else "ball"
        with torch.random.fork_rng(devices=[]):  # reproducible heads without reseeding the caller
            torch.manual_seed(seed)
            self.teacher_head = ProjectionHead(
                teacher_dim, options.embed_dim, spectral=spectral, onto=onto
            )
            self.student_head = ProjectionHead(
                student_dim, options.embed_dim, spectral=spectral, onto=onto
            )
            self.critic: Critic = build_critic(options, spectral=spectral)
        self.teacher_bank: Memory | None = None
        self.student_bank: Memory | None = None
        if options.lambda_global > 0:  # the local-only variant needs no negatives
            self.teacher_bank, self.student_bank = build_memories(
                options, num_samples, seed, onto, sample_labels
            )
        self._negative_generator = torch.Generator().manual_seed(seed + 2)
        self.register_buffer("z_teacher", torch.tensor(-1.0))
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.last_transport: TransportResult | None = None
        self._warned_unconverged = False

    @property
    def classifier(self) -> torch.nn.Linear | None:
        """The student classifier of the label terms, or None."""
        return None if self.label_terms is None else self.label_terms.classifier

    def hparams(self) -> dict[str, Any]:
        """Every setting by name: the sizes, the options and the seed.

        ``WCoRDLoss(**loss.hparams(), sample_labels=labels)`` rebuilds it.
        """
        return dict(self._hparams)

    def extra_repr(self) -> str:
        """Every setting, as :meth:`hparams`."""
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())

    # ------------------------------------------------------------------ forward

    def score(self, teacher_features: Tensor, student_features: Tensor) -> Tensor:
        """The critic on the positive pairs, ``g(t_i, s_i)`` ``[B]`` float32, of raw features.

        A function of the raw features ``[B, Dt]`` and ``[B, Ds]`` (heads, projection and critic;
        differentiable in both). Under ``lipschitz="spectral"`` it is ``1/tau``-Lipschitz in
        each argument.
        """
        with (
            parametrize.cached(),
            torch.autocast(device_type=teacher_features.device.type, enabled=False),
        ):
            dtype = next(self.teacher_head.parameters()).dtype
            u = self.teacher_head(teacher_features.to(dtype))
            v = self.student_head(student_features.to(dtype))
            scores: Tensor = self.critic(u, v)
            return scores

    def forward(
        self,
        student: Tensor,
        teacher: Tensor | None,
        labels: Tensor | None = None,
        indices: Tensor | None = None,
        *,
        negatives: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The WCoRD loss of one batch of positive pairs.

        Args:
            student: ``[B, Ds]`` student features (gradient flows into the student).
            teacher: ``[B, Dt]`` frozen-teacher features (detached here regardless).
            labels: ``[B]`` classes: for ``negatives="other_class"`` (default:
                ``sample_labels[indices]``) and the label terms; else unused.
            indices: ``[B]`` long dataset index of each pair (its memory row); required.
            negatives: bank rows to use instead of sampling (tests, custom samplers): ``[K]``
                shared or ``[B, K]`` per anchor.

        Returns:
            ``loss``, ``global``, ``local``, ``penalty`` (scalars, float32; a skipped term is
            0; ``penalty`` already times ``gp_weight``), ``marginal_error`` (the local solver's,
            relative to the mass per point), the label terms' ``ce``/``kd`` when on, and the
            detached embeddings ``teacher_embed``/``student_embed`` ``[B, d]`` (norm <= 1) for
            :meth:`update_memory`.
        """
        if teacher is None or indices is None:
            raise ValueError("WCoRDLoss: needs teacher features and the batch's dataset indices")
        teacher_features, student_features = teacher, student
        if teacher_features.dim() != 2 or student_features.dim() != 2:
            raise ValueError(
                f"WCoRDLoss: features must be [B, D], got teacher {tuple(teacher_features.shape)} "
                f"and student {tuple(student_features.shape)}"
            )
        batch = teacher_features.shape[0]
        if student_features.shape[0] != batch or indices.shape != (batch,) or batch == 0:
            raise ValueError(
                "WCoRDLoss: need matching non-empty batches, got teacher "
                f"{tuple(teacher_features.shape)}, "
                f"student {tuple(student_features.shape)}, indices {tuple(indices.shape)}"
            )
        if not is_integer(indices):
            raise ValueError(f"WCoRDLoss: indices must be an integer tensor, got {indices.dtype}")
        if labels is not None and (labels.shape != (batch,) or not is_integer(labels)):
            raise ValueError(
                f"WCoRDLoss: labels must be a [B={batch}] integer tensor, got "
                f"{labels.dtype} {tuple(labels.shape)}"
            )

        # Cache parametrised (spectral-normalised) weights: the critic reads its weight several
        # times per step, and every read must see the same normalised weight.
        with parametrize.cached():
            # Match the heads' parameter dtype (autocast, if active, still picks the matmul dtype).
            dtype = next(self.teacher_head.parameters()).dtype
            u = self.teacher_head(teacher_features.detach().to(dtype))  # [B, d] float32, norm <= 1
            v = self.student_head(student_features.to(dtype))  # [B, d] float32, norm <= 1
            zero = u.new_zeros(())
            # Scores with 1/tau ~ 14 lose ~0.05 nats per logit in bf16: the terms are float32.
            with torch.autocast(device_type=u.device.type, enabled=False):
                global_term = zero
                penalty = zero
                if self.options.lambda_global > 0:
                    global_term = self.global_term(
                        u,
                        v,
                        indices,
                        negatives,
                        labels if self.options.negatives == "other_class" else None,
                    )
                    if self.options.lipschitz == "gradient_penalty":
                        penalty = self.gradient_penalty(teacher_features, student_features)
                local_term = self.local_term(u, v) if self.options.lambda_local > 0 else zero
                total = (
                    self.options.lambda_global * global_term
                    + self.options.lambda_local * local_term
                    + penalty
                )
        out = {
            "loss": total,
            "global": global_term,
            "local": local_term,
            "penalty": penalty,
            "marginal_error": zero
            if self.last_transport is None or self.options.lambda_local == 0
            else zero.new_tensor(self.last_transport.relative_marginal_error),
            "teacher_embed": u.detach(),
            "student_embed": v.detach(),
        }
        if self.label_terms is not None:
            missing = "WCoRDLoss: alpha > 0 or beta > 0 needs the batch's labels"
            out = self.label_terms.added_to(out, student, labels, indices, missing=missing)
        return out

    # ------------------------------------------------------------------ terms

    def sample_negatives(self, indices: Tensor) -> Tensor:
        """Negative bank rows for a batch with dataset ``indices`` ``[B]``.

        ``[K]`` shared by the batch (``sharing="batch"``, without replacement) or ``[B, K]``
        (``sharing="anchor"``, independently per anchor, with replacement).

        All of the batch's indices are excluded (so no anchor meets its own pair among the
        negatives), which caps K at ``num_samples - #distinct(indices)`` in this step.
        """
        if not isinstance(self.teacher_bank, MemoryBank):
            raise ValueError(
                "WCoRDLoss: rows are sampled only from memory banks (lambda_global > 0, "
                "negatives other than 'queue')"
            )
        k = negatives_per_step(self.num_negatives_effective, self.num_samples, indices)
        if self.options.sharing == "anchor":
            return self.teacher_bank.sample_negatives_per_anchor(
                k, indices.shape[0], exclude=indices, generator=self._negative_generator
            )
        return self.teacher_bank.sample_negatives(
            k, exclude=indices, generator=self._negative_generator
        )

    def global_term(
        self,
        u: Tensor,
        v: Tensor,
        indices: Tensor,
        negatives: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Symmetric dual (contrastive) term, scalar in nats.

        Args:
            u: teacher embeddings ``[B, d]`` (norm <= 1, carrying gradient into ``h_T``).
            v: student embeddings ``[B, d]`` (norm <= 1, carrying gradient).
            indices: ``[B]`` dataset indices, excluded from the sampled negatives.
            negatives: bank rows ``[K]`` (shared) or ``[B, K]`` (per anchor) instead of sampling.
            labels: ``[B]`` anchor classes for ``negatives="other_class"`` (default: the banks'
                ``labels[indices]``).
        """
        if self.teacher_bank is None or self.student_bank is None:
            raise ValueError("WCoRDLoss: the global term needs lambda_global > 0")
        batch = u.shape[0]
        if isinstance(self.teacher_bank, NegativeQueue):
            if negatives is not None:
                raise ValueError(
                    "WCoRDLoss: under negatives='queue' the negatives are the queue's entries"
                )
            with parametrize.cached():
                positive = self.critic(u, v)  # [B]
                teacher_anchored = self.critic.against(
                    u, self.student_bank.memory.to(u.dtype)
                )  # [B, K]
                student_anchored = self.critic.against_teachers(
                    self.teacher_bank.memory.to(u.dtype), v
                )
            own = self.teacher_bank.own_rows(
                indices
            )  # an anchor's own older embedding is no negative
            teacher_anchored = teacher_anchored.masked_fill(own, -math.inf)
            student_anchored = student_anchored.masked_fill(own, -math.inf)
            return self._both_directions(positive, teacher_anchored, student_anchored)
        if negatives is None:
            negatives = self.sample_negatives(indices)
        elif negatives.dtype != torch.long or not (
            negatives.dim() == 1 or (negatives.dim() == 2 and negatives.shape[0] == batch)
        ):
            raise ValueError(
                f"WCoRDLoss: negatives must be a [K] or [B={batch}, K] long tensor, got "
                f"{negatives.dtype} {tuple(negatives.shape)}"
            )
        negatives = negatives.to(self.teacher_bank.memory.device)
        # Buffers carry no gradient: negatives are constants, as in CRD. [K, d] or [B, K, d].
        bank_t = self.teacher_bank.memory[negatives].to(u.dtype)
        bank_s = self.student_bank.memory[negatives].to(u.dtype)
        with parametrize.cached():
            positive = self.critic(u, v)  # [B]: g(u_i, v_i)
            teacher_anchored = self.critic.against(u, bank_s)  # [B, K]: g(u_i, mS_k)
            student_anchored = self.critic.against_teachers(bank_t, v)  # [B, K]: g(mT_k, v_i)
        if self.options.negatives == "other_class":
            anchor_labels = self.teacher_bank.labels_of(indices) if labels is None else labels
            same = self.teacher_bank.labels_of(negatives) == anchor_labels.to(
                negatives.device
            ).unsqueeze(1)
            teacher_anchored = teacher_anchored.masked_fill(same, -math.inf)
            student_anchored = student_anchored.masked_fill(same, -math.inf)
        return self._both_directions(positive, teacher_anchored, student_anchored)

    def _both_directions(
        self, positive: Tensor, teacher_anchored: Tensor, student_anchored: Tensor
    ) -> Tensor:
        """The contrast of the positives ``[B]`` against both sides' negatives ``[B, K]``.

        The teacher- and the student-anchored contrasts, summed, under the configured estimator.
        """
        if self.options.estimator == "infonce":
            return self._contrast(positive, teacher_anchored) + self._contrast(
                positive, student_anchored
            )
        if self.z_teacher <= 0 or self.z_student <= 0:  # once, from the first batch, as CRD
            self.z_teacher.fill_(nce_normaliser(positive, teacher_anchored, self.num_samples))
            self.z_student.fill_(nce_normaliser(positive, student_anchored, self.num_samples))
        log_noise = math.log(teacher_anchored.shape[1] / self.num_samples)
        log_z_t, log_z_s = self.z_teacher.log(), self.z_student.log()
        return nce_loss(positive - log_z_t, teacher_anchored - log_z_t, log_noise) + nce_loss(
            positive - log_z_s, student_anchored - log_z_s, log_noise
        )

    @staticmethod
    def _contrast(positive: Tensor, negative: Tensor) -> Tensor:
        """InfoNCE: ``-mean_i [p_i - log(exp p_i + sum_k exp n_ik)]``.

        For ``positive`` [B] and ``negative`` [B, K].

        Masked negatives (``-inf``) drop out of the sum; an anchor with none left gives 0.
        """
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
        return (torch.logsumexp(logits, dim=1) - positive).mean()

    def gradient_penalty(self, teacher_features: Tensor, student_features: Tensor) -> Tensor:
        """One-sided gradient penalty at the positive pairs, times ``gp_weight`` (scalar).

        ``gp_weight * mean_i [(|grad_t g_i| - 1/tau)_+^2 + (|grad_s g_i| - 1/tau)_+^2]``,
        ``g_i = g(t_i, s_i)``, with ``g(t, s) = critic(P(h_T(t)), P(h_S(s)))``, the gradient
        taken w.r.t. detached float32 copies of the features with ``create_graph=True`` when
        grad mode is on (so the penalty trains the heads and the critic, not the student
        encoder). Under ``no_grad`` it is evaluated (detached) for monitoring; under
        ``inference_mode`` it is 0.
        """
        dtype = next(self.teacher_head.parameters()).dtype
        zero = torch.zeros((), dtype=torch.float32, device=teacher_features.device)
        if torch.is_inference_mode_enabled():
            return zero
        create_graph = torch.is_grad_enabled()
        with (
            torch.set_grad_enabled(True),
            torch.autocast(device_type=teacher_features.device.type, enabled=False),
        ):
            t = teacher_features.detach().to(dtype).requires_grad_(True)
            s = student_features.detach().to(dtype).requires_grad_(True)
            score = self.critic(
                self.teacher_head(t), self.student_head(s)
            )  # [B], pairs independent
            grad_t, grad_s = torch.autograd.grad(score.sum(), (t, s), create_graph=create_graph)
            bound = self.critic.lipschitz_bound  # 1/tau
            excess = (grad_t.float().norm(dim=1) - bound).clamp_min(0).square()
            excess = excess + (grad_s.float().norm(dim=1) - bound).clamp_min(0).square()
            penalty: Tensor = self.options.gp_weight * excess.mean()
        return penalty if create_graph else penalty.detach()

    def local_term(self, u: Tensor, v: Tensor) -> Tensor:
        """Primal (entropic OT) term ``sum_ij P_ij C_ij``, scalar in cost units ([0, 2]).

        ``P`` is computed without gradient; the gradient flows through ``C = 1 - u v^T`` only
        (by the envelope theorem this is also the gradient of the regularised OT value).
        """
        if self.options.local_scope == "global":
            u, v = all_gather_with_grad(u), all_gather_with_grad(v)  # [world * B, d]
        cost = 1.0 - u @ v.t()  # [B, B]
        # The solver reads its settings from the options as they are (sinkhorn_eps or
        # ipot_beta, sinkhorn_iters, and sinkhorn_tol relative to the mass per point: an
        # absolute 1e-4 would allow 10 % of a point's mass at B = 1024).
        result = self.solver(cost, self.options)
        self.last_transport = result
        if self.options.sinkhorn_tol > 0 and not result.converged and not self._warned_unconverged:
            self._warned_unconverged = True  # once per run: the error is logged every step anyway
            warnings.warn(
                f"WCoRD local term: {self.options.local_solver} stopped after "
                f"{result.iterations} iterations "
                f"with marginal error {result.relative_marginal_error:.3g} x (1/B), above "
                f"sinkhorn_tol={self.options.sinkhorn_tol:g}; raise sinkhorn_iters or sinkhorn_eps "
                "(the marginal error is logged as 'marginal_error' in the training history)",
                TransportNotConverged,
                stacklevel=2,
            )
        return (result.plan * cost).sum()

    # ------------------------------------------------------------------ memory

    @torch.no_grad()
    def update_memory(self, indices: Tensor, teacher_embed: Tensor, student_embed: Tensor) -> None:
        """Update both memories with a (gathered) batch (banks: momentum; queues: enqueue).

        Call after the optimiser step.

        Args:
            indices: ``[B]`` long dataset indices (from all processes).
            teacher_embed: ``[B, d]`` teacher embeddings (``forward(...)["teacher_embed"]``).
            student_embed: ``[B, d]`` student embeddings (``forward(...)["student_embed"]``).
        """
        if self.teacher_bank is not None and self.student_bank is not None:  # not local-only
            self.teacher_bank.record(indices, teacher_embed)
            self.student_bank.record(indices, student_embed)


@METHODS.register("wcord-global", "WCoRD dual (global contrastive) term only")
class WCoRDGlobal(WCoRDLoss):
    """``wcord`` with ``lambda_local = 0``."""

    fixed: ClassVar[dict[str, float]] = {"lambda_local": 0.0}


@METHODS.register("wcord-local", "WCoRD primal (in-batch optimal transport) term only")
class WCoRDLocal(WCoRDLoss):
    """``wcord`` with ``lambda_global = 0``: no memory, no negatives."""

    fixed: ClassVar[dict[str, float]] = {"lambda_global": 0.0}


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"WCoRDConfig": "WCoRDOptions"}, globals())
