"""WCoRD: Wasserstein Contrastive Representation Distillation (Chen et al., CVPR 2021).

The loss combines two views of the Wasserstein distance between teacher and student
representations (see the project's method notes ``WCORD.md``, a reconstruction of the paper):

* **global** (dual form): a contrastive bound on the Wasserstein dependency between teacher and
  student, with a Lipschitz critic ``g(u, v) = <u, v> / tau`` scoring each positive pair against
  K memory-bank negatives, symmetrised over the two roles::

      L_global = - mean_i [ g(u_i, v_i) - log( exp g(u_i, v_i) + sum_k exp g(u_i, mS_k) ) ]
                 - mean_i [ g(u_i, v_i) - log( exp g(u_i, v_i) + sum_k exp g(v_i, mT_k) ) ]

  (nats; each half is >= 0 and equals ``log(K + 1)`` for an uninformative critic).
* **local** (primal form): entropic OT between the batch's teacher and student embeddings,
  ``C_ij = 1 - <u_i, v_j>`` (in [0, 2]), uniform marginals, plan ``P`` from log-domain Sinkhorn
  held constant, ``L_local = sum_ij P_ij C_ij`` (in [0, 2]; 0 when every pair coincides).

Total: ``lambda_global * L_global + lambda_local * L_local``. Named variants: ``wcord`` (both),
``wcord-global`` (``lambda_local=0``), ``wcord-local`` (``lambda_global=0``); a zero weight skips
that term entirely. Caveat (measured on a toy problem): with both heads trained and nothing
else, ``wcord-local`` can collapse, because mapping every sample to one point makes ``C = 0``;
it is meant to regularise the global term, not to stand alone.

Hyperparameters (all "choice" in the notes; record :meth:`WCoRDLoss.hparams` with results):
``embed_dim=128``, ``num_negatives=16384`` (capped at ``num_samples - 1``), ``tau=0.07``,
``momentum=0.5`` (CRD's values), ``lambda_global=0.8`` (CRD's weight), ``lambda_local=0.1``,
``lipschitz="spectral"``, ``critic="dot"``, ``sinkhorn_eps=0.05``, ``sinkhorn_iters=100``,
``sinkhorn_tol=1e-4``.

Training-loop contract: call ``forward`` (the memory banks are read, never written), step the
optimiser, then ``update_memory(indices, out["teacher_embed"], out["student_embed"])`` with
indices and embeddings all-gathered from every process so that every replica's banks agree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.objectives.critic import CRITICS, LIPSCHITZ_MODES, DotCritic, ProjectionHead
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.sinkhorn import TransportResult, sinkhorn_log

__all__ = ["WCoRDLoss"]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"WCoRDLoss: {name} must be an int >= {minimum}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        upper = "inf)" if high == math.inf else f"{high}]"
        raise ValueError(
            f"WCoRDLoss: {name} must be a finite number in {bracket}{low}, {upper}, got {value!r}"
        )


class WCoRDLoss(nn.Module):
    """WCoRD distillation loss with its projection heads and memory banks.

    Args:
        teacher_dim: teacher feature size ``Dt``.
        student_dim: student feature size ``Ds``.
        num_samples: number of training samples ``N`` (rows of each memory bank), >= 2.
        embed_dim: shared embedding size ``d`` (choice, 128).
        num_negatives: negatives per batch ``K`` (choice, 16384); the effective value is
            ``min(num_negatives, num_samples - 1)`` (:attr:`num_negatives_effective`), and in a
            step at most ``num_samples - #distinct(indices)``.
        tau: critic temperature (choice, 0.07).
        momentum: memory-bank momentum ``mu`` in [0, 1] (choice, 0.5).
        lambda_global: weight of the global (dual) term, >= 0 (choice, 0.8).
        lambda_local: weight of the local (primal) term, >= 0 (choice, 0.1).
        lipschitz: ``"spectral"`` (spectral-normalised heads: the Wasserstein critic) or
            ``"none"`` (unconstrained: the InfoNCE/CRD-style ablation).
        critic: ``"dot"``: ``<u, v> / tau`` on L2-normalised projections.
        sinkhorn_eps: entropic regularisation of the local term, in cost units (choice, 0.05).
        sinkhorn_iters: maximum Sinkhorn iterations (choice, 100).
        sinkhorn_tol: Sinkhorn early-stop tolerance on the marginals (choice, 1e-4).
        seed: seeds the heads' initialisation (without touching the global RNG), the banks'
            initialisation and the negative sampling.

    Attributes:
        teacher_head, student_head: :class:`ProjectionHead` ``h_T``, ``h_S``.
        teacher_bank, student_bank: :class:`MemoryBank` ``[N, d]``, or None when
            ``lambda_global == 0`` (the local-only variant needs no negatives).
        last_transport: the local term's last :class:`TransportResult` (diagnostics), or None.
    """

    def __init__(
        self,
        teacher_dim: int,
        student_dim: int,
        num_samples: int,
        embed_dim: int = 128,
        num_negatives: int = 16384,
        tau: float = 0.07,
        momentum: float = 0.5,
        lambda_global: float = 0.8,
        lambda_local: float = 0.1,
        lipschitz: str = "spectral",
        critic: str = "dot",
        sinkhorn_eps: float = 0.05,
        sinkhorn_iters: int = 100,
        sinkhorn_tol: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_int("teacher_dim", teacher_dim, 1)
        _check_int("student_dim", student_dim, 1)
        _check_int("num_samples", num_samples, 2)
        _check_int("embed_dim", embed_dim, 1)
        _check_int("num_negatives", num_negatives, 1)
        _check_float("tau", tau, 0.0, low_open=True)
        _check_float("momentum", momentum, 0.0, 1.0)
        _check_float("lambda_global", lambda_global, 0.0)
        _check_float("lambda_local", lambda_local, 0.0)
        if lambda_global == 0 and lambda_local == 0:
            raise ValueError("WCoRDLoss: lambda_global and lambda_local are both 0; set at least one > 0")
        if lipschitz not in LIPSCHITZ_MODES:
            raise ValueError(f"WCoRDLoss: lipschitz must be one of {LIPSCHITZ_MODES}, got {lipschitz!r}")
        if critic not in CRITICS:
            raise ValueError(f"WCoRDLoss: critic must be one of {CRITICS}, got {critic!r}")
        _check_float("sinkhorn_eps", sinkhorn_eps, 0.0, low_open=True)
        _check_int("sinkhorn_iters", sinkhorn_iters, 1)
        _check_float("sinkhorn_tol", sinkhorn_tol, 0.0)
        _check_int("seed", seed, 0)

        self._hparams: dict[str, Any] = dict(
            teacher_dim=teacher_dim, student_dim=student_dim, num_samples=num_samples,
            embed_dim=embed_dim, num_negatives=num_negatives, tau=float(tau),
            momentum=float(momentum), lambda_global=float(lambda_global),
            lambda_local=float(lambda_local), lipschitz=lipschitz, critic=critic,
            sinkhorn_eps=float(sinkhorn_eps), sinkhorn_iters=sinkhorn_iters,
            sinkhorn_tol=float(sinkhorn_tol), seed=seed,
        )
        self.num_samples = num_samples
        self.num_negatives_effective = min(num_negatives, num_samples - 1)
        self.lambda_global = float(lambda_global)
        self.lambda_local = float(lambda_local)
        self.sinkhorn_eps = float(sinkhorn_eps)
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_tol = float(sinkhorn_tol)

        spectral = lipschitz == "spectral"
        with torch.random.fork_rng(devices=[]):  # reproducible heads without reseeding the caller
            torch.manual_seed(seed)
            self.teacher_head = ProjectionHead(teacher_dim, embed_dim, spectral=spectral)
            self.student_head = ProjectionHead(student_dim, embed_dim, spectral=spectral)
        self.critic = DotCritic(tau)
        self.teacher_bank: MemoryBank | None = None
        self.student_bank: MemoryBank | None = None
        if self.lambda_global > 0:
            self.teacher_bank = MemoryBank(num_samples, embed_dim, momentum, seed=seed)
            self.student_bank = MemoryBank(num_samples, embed_dim, momentum, seed=seed + 1)
        self._negative_generator = torch.Generator().manual_seed(seed + 2)
        self.last_transport: TransportResult | None = None

    def hparams(self) -> dict[str, Any]:
        """Every constructor argument by name (``WCoRDLoss(**loss.hparams())`` rebuilds it)."""
        return dict(self._hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        teacher_features: Tensor,
        student_features: Tensor,
        indices: Tensor,
        negatives: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Compute the WCoRD loss for one batch of positive pairs.

        Args:
            teacher_features: ``[B, Dt]`` frozen-teacher features (detached here regardless).
            student_features: ``[B, Ds]`` student features (gradient flows into the student).
            indices: ``[B]`` long dataset index of each pair (its memory-bank row).
            negatives: optional ``[K]`` long bank rows to use as the shared negatives instead of
                sampling (for tests and custom samplers); used as given.

        Returns:
            ``{"loss": lambda_global * global + lambda_local * local, "global": ..., "local": ...}``
            (scalars, float32; a skipped term is a constant 0) plus ``"teacher_embed"`` and
            ``"student_embed"``: the batch's unit-norm embeddings ``[B, d]``, detached, for
            :meth:`update_memory` after the optimiser step.
        """
        if teacher_features.dim() != 2 or student_features.dim() != 2:
            raise ValueError(
                f"WCoRDLoss: features must be [B, D], got teacher {tuple(teacher_features.shape)} "
                f"and student {tuple(student_features.shape)}"
            )
        batch = teacher_features.shape[0]
        if student_features.shape[0] != batch or indices.shape != (batch,) or batch == 0:
            raise ValueError(
                f"WCoRDLoss: need matching non-empty batches, got teacher {tuple(teacher_features.shape)}, "
                f"student {tuple(student_features.shape)}, indices {tuple(indices.shape)}"
            )
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise ValueError(f"WCoRDLoss: indices must be an integer tensor, got {indices.dtype}")

        # Match the heads' parameter dtype (autocast, if active, still picks the matmul dtype).
        dtype = next(self.teacher_head.parameters()).dtype
        u = self.teacher_head(teacher_features.detach().to(dtype))  # [B, d] float32, unit norm
        v = self.student_head(student_features.to(dtype))  # [B, d] float32, unit norm
        zero = u.new_zeros(())
        # Scores with 1/tau ~ 14 lose ~0.05 nats per logit in bf16; compute the terms in float32.
        with torch.autocast(device_type=u.device.type, enabled=False):
            global_term = self.global_term(u, v, indices, negatives) if self.lambda_global > 0 else zero
            local_term = self.local_term(u, v) if self.lambda_local > 0 else zero
            total = self.lambda_global * global_term + self.lambda_local * local_term
        return {
            "loss": total,
            "global": global_term,
            "local": local_term,
            "teacher_embed": u.detach(),
            "student_embed": v.detach(),
        }

    # ------------------------------------------------------------------ terms

    def sample_negatives(self, indices: Tensor) -> Tensor:
        """One shared set of negative bank rows ``[K]`` for a batch with dataset ``indices`` ``[B]``.

        All of the batch's indices are excluded (so no anchor meets its own pair among the
        negatives), which caps K at ``num_samples - #distinct(indices)`` in this step.
        """
        if self.teacher_bank is None:
            raise ValueError("WCoRDLoss: negatives are only used when lambda_global > 0")
        distinct = int(torch.unique(indices.detach()).numel())
        k = min(self.num_negatives_effective, self.num_samples - distinct)
        if k < 1:
            raise ValueError(
                f"WCoRDLoss: a batch with {distinct} distinct indices leaves no negatives among "
                f"num_samples={self.num_samples}; use num_samples > batch size"
            )
        return self.teacher_bank.sample_negatives(k, exclude=indices, generator=self._negative_generator)

    def global_term(self, u: Tensor, v: Tensor, indices: Tensor, negatives: Tensor | None = None) -> Tensor:
        """Symmetric dual (contrastive) term, scalar in nats.

        Args:
            u: teacher embeddings ``[B, d]`` (unit norm, carrying gradient into ``h_T``).
            v: student embeddings ``[B, d]`` (unit norm, carrying gradient).
            indices: ``[B]`` dataset indices, excluded from the sampled negatives.
            negatives: ``[K]`` bank rows to use instead of sampling.
        """
        if self.teacher_bank is None or self.student_bank is None:
            raise ValueError("WCoRDLoss: the global term needs lambda_global > 0")
        if negatives is None:
            negatives = self.sample_negatives(indices)
        elif negatives.dim() != 1 or negatives.dtype != torch.long:
            raise ValueError(
                f"WCoRDLoss: negatives must be a [K] long tensor, got {negatives.dtype} "
                f"{tuple(negatives.shape)}"
            )
        negatives = negatives.to(self.teacher_bank.memory.device)
        # Buffers carry no gradient: negatives are constants, as in CRD.
        bank_t = self.teacher_bank.memory[negatives].to(u.dtype)  # [K, d]
        bank_s = self.student_bank.memory[negatives].to(u.dtype)  # [K, d]
        positive = self.critic(u, v)  # [B]
        teacher_anchor = self._contrast(positive, self.critic.against(u, bank_s))
        student_anchor = self._contrast(positive, self.critic.against(v, bank_t))
        return teacher_anchor + student_anchor

    @staticmethod
    def _contrast(positive: Tensor, negative: Tensor) -> Tensor:
        """``-mean_i [p_i - log(exp p_i + sum_k exp n_ik)]`` for ``positive`` [B], ``negative`` [B, K]."""
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
        return (torch.logsumexp(logits, dim=1) - positive).mean()

    def local_term(self, u: Tensor, v: Tensor) -> Tensor:
        """Primal (entropic OT) term ``sum_ij P_ij C_ij``, scalar in cost units ([0, 2]).

        ``P`` is computed without gradient; the gradient flows through ``C = 1 - u v^T`` only
        (by the envelope theorem this is also the gradient of the regularised OT value).
        """
        cost = 1.0 - u @ v.t()  # [B, B]
        result = sinkhorn_log(cost, self.sinkhorn_eps, max_iters=self.sinkhorn_iters, tol=self.sinkhorn_tol)
        self.last_transport = result
        return (result.plan * cost).sum()

    # ------------------------------------------------------------------ memory

    @torch.no_grad()
    def update_memory(self, indices: Tensor, teacher_embed: Tensor, student_embed: Tensor) -> None:
        """Momentum-update both banks with a (gathered) batch; call after the optimiser step.

        Args:
            indices: ``[B]`` long dataset indices (from all processes).
            teacher_embed: ``[B, d]`` teacher embeddings (``forward(...)["teacher_embed"]``).
            student_embed: ``[B, d]`` student embeddings (``forward(...)["student_embed"]``).
        """
        if self.teacher_bank is None or self.student_bank is None:
            return  # local-only variant: no banks to maintain
        self.teacher_bank.update(indices, teacher_embed)
        self.student_bank.update(indices, student_embed)
