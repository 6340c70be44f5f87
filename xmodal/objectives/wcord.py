"""WCoRD: Wasserstein Contrastive Representation Distillation (Chen et al., CVPR 2021).

The loss combines two views of the Wasserstein distance between teacher and student
representations (see the project's method notes ``WCORD.md``, a reconstruction of the paper):

* **global** (dual form): a contrastive bound on the Wasserstein dependency between teacher and
  student, with a Lipschitz critic ``g`` (default ``g(u, v) = <u, v> / tau``) scoring each
  positive pair against K memory-bank negatives, symmetrised over the two roles::

      L_global = - mean_i [ g(u_i, v_i) - log( exp g(u_i, v_i) + sum_k exp g(u_i, mS_k) ) ]
                 - mean_i [ g(u_i, v_i) - log( exp g(u_i, v_i) + sum_k exp g(mT_k, v_i) ) ]

  (nats; each half is >= 0 and equals ``log(K + 1)`` for an uninformative critic). The critic
  is always called as ``g(teacher, student)``: the teacher-anchored half scores
  ``(u_i, mS_k)``, the student-anchored half ``(mT_k, v_i)``.
* **local** (primal form): entropic OT between the batch's teacher and student embeddings,
  ``C_ij = 1 - <u_i, v_j>`` (in [0, 2]), uniform marginals, plan ``P`` from log-domain Sinkhorn
  held constant, ``L_local = sum_ij P_ij C_ij`` (in [0, 2]; 0 when every pair coincides).

Total: ``lambda_global * L_global + lambda_local * L_local (+ penalty under
lipschitz="gradient_penalty")``. Named variants: ``wcord`` (both),
``wcord-global`` (``lambda_local=0``), ``wcord-local`` (``lambda_global=0``); a zero weight skips
that term entirely. Caveat (measured on a toy problem): with both heads trained and nothing
else, ``wcord-local`` can collapse, because mapping every sample to one point makes ``C = 0``;
it is meant to regularise the global term, not to stand alone.

Hyperparameters (all "choice" in the notes; record :meth:`WCoRDLoss.hparams` with results):
``embed_dim=128``, ``num_negatives=16384`` (capped at ``num_samples - 1``), ``tau=0.07``,
``momentum=0.5`` (CRD's values), ``lambda_global=0.8`` (CRD's weight), ``lambda_local=0.1``,
``lipschitz="spectral"``, ``gp_weight=10.0``, ``critic="dot"``, ``critic_hidden=256``,
``negatives="uniform"``, ``sharing="batch"``, ``sinkhorn_eps=0.05``, ``sinkhorn_iters=100``,
``sinkhorn_tol=1e-3`` (relative to the mass per point; 100 iterations at ``sinkhorn_eps=0.05``
reach 2-4e-4 on ``scenes``, so a default run does not warn).

Options of the global term:

* ``lipschitz`` -- how the critic is kept ``1/tau``-Lipschitz (see :mod:`xmodal.objectives.critic`
  for the bounds):

  - ``"spectral"`` (default): spectrally normalised heads projected onto the unit **ball**
    (``z / max(1, |z|)``, not the sphere) and spectrally normalised critic weights. Then
    ``g(t, s)`` is ``1/tau``-Lipschitz in ``t`` and in ``s`` as a function of the raw features,
    at every feature scale (:meth:`WCoRDLoss.score` evaluates it; ``docs/lipschitz-critic.md``
    argues the choice). Normalising onto the sphere instead would constrain nothing:
    ``normalise(W t / sigma + b / sigma) = normalise(W t + b)``.
  - ``"gradient_penalty"``: WGAN-GP (Gulrajani et al. 2017), **one-sided** (Petzka et al. 2018):
    unconstrained heads (projected onto the ball) and critic, plus ::

        penalty = gp_weight * mean_i [ (|grad_t g(t_i, s_i)| - 1/tau)_+^2
                                       + (|grad_s g(t_i, s_i)| - 1/tau)_+^2 ]

    with ``g(t, s) = critic(P(h_T(t)), P(h_S(s)))``: the bound is ``1/tau`` w.r.t. the
    features, in each argument separately (the bound that ``"spectral"`` guarantees). In the
    units of the unit-temperature critic ``tau * g`` this is WGAN-GP with ``lambda = gp_weight / tau^2`` (~2000 at the defaults): stiff; on a toy problem started
    at 3.4/tau, the constant measured at the data's pairs after 150 steps was 1.07/tau (the test
    allows 1.15/tau), against 2/tau without the penalty. It is one-sided because a critic on
    the ball need not have gradient norm ``1/tau`` everywhere (it is flat in ``h(t)`` outside
    the ball's radial direction); a critic within the bound pays exactly 0. The
    gradient is taken at the batch's **positive pairs** (the negatives exist only as bank
    embeddings, without features, so there are no feature-space interpolates between positive
    and negative pairs), w.r.t. **detached** copies of the features, with
    ``create_graph=True``: the penalty trains the heads and the critic, never the student
    encoder (which could otherwise satisfy it by rescaling its features). It costs one more
    forward of the heads and critic on ``B`` pairs plus a double backward. It is the forward
    dict's ``"penalty"`` (already multiplied by ``gp_weight``) and is added to the total
    unweighted by ``lambda_global``; it is 0 under the other modes, when ``lambda_global == 0``,
    and under ``torch.inference_mode`` (no autograd there; under ``no_grad`` it is evaluated,
    detached).
  - ``"none"``: nothing; heads and banks on the unit sphere (the InfoNCE/CRD-style ablation).
* ``critic`` -- ``"dot"`` ``<u, v> / tau``; ``"bilinear"`` ``u^T W v / tau`` (``W`` ``[d, d]``,
  identity init, spectrally normalised under ``"spectral"``); ``"mlp"`` ``MLP([u; v]) / tau``
  with one hidden layer of width ``critic_hidden`` and LeakyReLU, spectrally normalised layers
  under ``"spectral"``. The mlp critic scores each (anchor, negative) pair separately: ``B * K *
  critic_hidden`` hidden units per side and step, computed in checkpointed chunks over ``K``
  (see :class:`~xmodal.objectives.critic.MLPCritic`); dot and bilinear cost one ``[B, d] x [d, K]``
  matmul per side.
* ``negatives`` -- ``"uniform"``: K bank rows drawn uniformly (the batch's own indices
  excluded). ``"other_class"``: drawn the same way, then every negative sharing the anchor's
  class is masked out in the ``[B, K]`` score matrix (score ``-inf``), in both halves. Needs
  the dataset's labels ``sample_labels`` ``[N]`` (ValueError without them); the anchors'
  labels are ``forward(..., labels=)`` when given, else ``sample_labels[indices]``. An anchor
  left with no valid negative contributes ``log(exp p) - p = 0`` to its half (its term is 0,
  still counted in the mean over ``B``). Anchors keep a variable number ``K_i`` of negatives,
  so an uninformative critic gives ``log(K_i + 1)`` per anchor.
* ``sharing`` -- ``"batch"``: one set of K negatives (sampled without replacement) shared by
  all anchors, scored with a ``[B, d] x [d, K]`` matmul; memory ``O(K d)`` for the gathered
  bank rows. ``"anchor"``: K negatives per anchor, drawn independently with replacement from
  the same rows (CRD's reference CIFAR sampler draws without replacement, from other classes;
  :class:`~xmodal.objectives.baselines.crd.CRDObjective` offers that); gathers ``[B, K, d]``
  per bank, i.e. about ``B * K * d * 4`` bytes per side (0.5 GiB per side at ``B=64``, ``K=16384``, ``d=128``).
  Both give the same expected denominator; with equal per-anchor sets the loss is identical.

Training-loop contract: call ``forward`` (the memory banks are read, never written), step the
optimiser, then ``update_memory(indices, out["teacher_embed"], out["student_embed"])`` with
indices and embeddings all-gathered from every process so that every replica's banks agree.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from xmodal.objectives.critic import (
    CRITICS,
    LIPSCHITZ_MODES,
    Critic,
    ProjectionHead,
    build_critic,
)
from xmodal.objectives.embedding_storage import STORAGE_DTYPES
from xmodal.objectives.gather import all_gather_with_grad
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.negative_queue import NegativeQueue
from xmodal.objectives.sinkhorn import TransportNotConverged, TransportResult
from xmodal.objectives.transport import TRANSPORT_METHODS, solve_transport

__all__ = ["WCoRDLoss", "NEGATIVE_MODES", "SHARING_MODES"]

NEGATIVE_MODES = ("uniform", "other_class", "queue")
"""How negatives are chosen: uniformly from the banks, the same with same-class negatives masked
out, or every entry of a FIFO queue of recent embeddings (no N-sized bank)."""

SHARING_MODES = ("batch", "anchor")
LOCAL_SCOPES = ("process", "global")
"""One set of negatives shared by the batch, or one set per anchor."""


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
    """WCoRD distillation loss with its projection heads, critic and memory banks.

    Args:
        teacher_dim: teacher feature size ``Dt``.
        student_dim: student feature size ``Ds``.
        num_samples: number of training samples ``N`` (rows of each memory bank), >= 2.
        embed_dim: shared embedding size ``d`` (choice, 128).
        num_negatives: negatives per anchor ``K`` (choice, 16384); the effective value is
            ``min(num_negatives, num_samples - 1)`` (:attr:`num_negatives_effective`), and in a
            step at most ``num_samples - #distinct(indices)``.
        tau: critic temperature (choice, 0.07).
        momentum: memory-bank momentum ``mu`` in [0, 1] (choice, 0.5).
        lambda_global: weight of the global (dual) term, >= 0 (choice, 0.8).
        lambda_local: weight of the local (primal) term, >= 0 (choice, 0.1).
        lipschitz: ``"spectral"`` (spectral-normalised heads onto the unit ball and
            spectral-normalised critic: the Wasserstein critic), ``"gradient_penalty"``
            (one-sided WGAN-GP penalty, heads onto the ball, see the module docstring) or
            ``"none"`` (unconstrained heads onto the sphere: the InfoNCE/CRD-style ablation).
        critic: ``"dot"`` (``<u, v> / tau``), ``"bilinear"`` (``u^T W v / tau``) or ``"mlp"``
            (``MLP([u; v]) / tau``), on the projected embeddings.
        sinkhorn_eps: entropic regularisation of the local term, in cost units (choice, 0.05).
        sinkhorn_iters: maximum solver iterations of the local term (choice, 100).
        sinkhorn_tol: solver early-stop tolerance on the marginals, **relative** to the mass per
            point ``1/B`` (the solver gets ``sinkhorn_tol / B``; choice, 1e-3). A solver that
            stops above it warns once per loss object (:class:`TransportNotConverged`); the
            relative error is the forward dict's ``"marginal_error"`` either way.
        local_solver: ``"sinkhorn"`` (entropic plan, log domain, reg ``sinkhorn_eps``) or
            ``"ipot"`` (proximal point iterations approaching the unregularised plan, step
            ``ipot_beta``), keyword-only.
        ipot_beta: IPOT's proximal step in cost units (choice, 1.0 for costs in [0, 2]).
        local_scope: ``"process"`` (the local term's plan is over each process's batch) or
            ``"global"`` (embeddings are all-gathered with autograd, the plan is over the
            global batch; see :mod:`xmodal.objectives.gather`), keyword-only.
        seed: seeds the heads' and critic's initialisation (without touching the global RNG),
            the banks' initialisation and the negative sampling.
        gp_weight: weight of the gradient penalty, >= 0 (choice, 10.0, WGAN-GP's); used only
            under ``lipschitz="gradient_penalty"``.
        critic_hidden: hidden width of the mlp critic, >= 1 (choice, 256); used only under
            ``critic="mlp"``.
        negatives: ``"uniform"`` or ``"other_class"`` (mask same-class negatives; needs
            ``sample_labels``).
        sharing: ``"batch"`` (one set of negatives for the batch) or ``"anchor"`` (a set per
            anchor, ``[B, K, d]`` gathered per bank).
        sample_labels: ``[N]`` integer class label of every training sample, or None; stored
            in both banks (buffer ``labels``). Data, not a hyperparameter: not in
            :meth:`hparams`.

    Attributes:
        teacher_head, student_head: :class:`ProjectionHead` ``h_T``, ``h_S``.
        critic: the :class:`~xmodal.objectives.critic.Critic` ``g``.
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
        sinkhorn_tol: float = 1e-3,
        seed: int = 0,
        *,
        gp_weight: float = 10.0,
        critic_hidden: int = 256,
        negatives: str = "uniform",
        sharing: str = "batch",
        sample_labels: Tensor | None = None,
        local_solver: str = "sinkhorn",
        ipot_beta: float = 1.0,
        local_scope: str = "process",
        bank_dtype: str = "float32",
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
        _check_float("gp_weight", gp_weight, 0.0)
        _check_int("critic_hidden", critic_hidden, 1)
        if local_solver not in TRANSPORT_METHODS:
            raise ValueError(f"WCoRDLoss: local_solver must be one of {TRANSPORT_METHODS}, got {local_solver!r}")
        _check_float("ipot_beta", ipot_beta, 0.0, low_open=True)
        if local_scope not in LOCAL_SCOPES:
            raise ValueError(f"WCoRDLoss: local_scope must be one of {LOCAL_SCOPES}, got {local_scope!r}")
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f"WCoRDLoss: negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")
        if sharing not in SHARING_MODES:
            raise ValueError(f"WCoRDLoss: sharing must be one of {SHARING_MODES}, got {sharing!r}")
        if negatives == "queue" and sharing != "batch":
            raise ValueError("WCoRDLoss: negatives='queue' scores every anchor against the whole queue; "
                             "use sharing='batch'")
        if bank_dtype not in STORAGE_DTYPES:
            raise ValueError(f"WCoRDLoss: bank_dtype must be one of {list(STORAGE_DTYPES)}, got {bank_dtype!r}")
        if sample_labels is not None:
            if not isinstance(sample_labels, Tensor) or sample_labels.shape != (num_samples,):
                got = tuple(sample_labels.shape) if isinstance(sample_labels, Tensor) else type(sample_labels)
                raise ValueError(
                    f"WCoRDLoss: sample_labels must be a [num_samples={num_samples}] tensor, got {got}"
                )
            if not _is_integer(sample_labels):
                raise ValueError(f"WCoRDLoss: sample_labels must be an integer tensor, got {sample_labels.dtype}")
        elif negatives == "other_class":
            raise ValueError(
                "WCoRDLoss: negatives='other_class' needs sample_labels (the [N] labels of the dataset)"
            )

        self._hparams: dict[str, Any] = dict(
            teacher_dim=teacher_dim, student_dim=student_dim, num_samples=num_samples,
            embed_dim=embed_dim, num_negatives=num_negatives, tau=float(tau),
            momentum=float(momentum), lambda_global=float(lambda_global),
            lambda_local=float(lambda_local), lipschitz=lipschitz, gp_weight=float(gp_weight),
            critic=critic, critic_hidden=critic_hidden, negatives=negatives, sharing=sharing,
            sinkhorn_eps=float(sinkhorn_eps), sinkhorn_iters=sinkhorn_iters,
            sinkhorn_tol=float(sinkhorn_tol), seed=seed, local_solver=local_solver,
            ipot_beta=float(ipot_beta), local_scope=local_scope, bank_dtype=bank_dtype,
        )
        self.num_samples = num_samples
        self.num_negatives_effective = min(num_negatives, num_samples - 1)
        self.lambda_global = float(lambda_global)
        self.lambda_local = float(lambda_local)
        self.lipschitz = lipschitz
        self.gp_weight = float(gp_weight)
        self.negatives = negatives
        self.sharing = sharing
        self.sinkhorn_eps = float(sinkhorn_eps)
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_tol = float(sinkhorn_tol)
        self.local_solver = local_solver
        self.local_scope = local_scope
        # Sinkhorn's reg is eps; IPOT's is its proximal step beta (it approaches the exact plan).
        self.local_reg = float(sinkhorn_eps) if local_solver == "sinkhorn" else float(ipot_beta)

        spectral = lipschitz == "spectral"
        # The ball keeps the heads 1-Lipschitz; the sphere (1/|z|-Lipschitz) only for the ablation.
        onto = "sphere" if lipschitz == "none" else "ball"
        with torch.random.fork_rng(devices=[]):  # reproducible heads without reseeding the caller
            torch.manual_seed(seed)
            self.teacher_head = ProjectionHead(teacher_dim, embed_dim, spectral=spectral, onto=onto)
            self.student_head = ProjectionHead(student_dim, embed_dim, spectral=spectral, onto=onto)
            self.critic: Critic = build_critic(
                critic, embed_dim, tau, spectral=spectral, hidden=critic_hidden
            )
        self.teacher_bank: MemoryBank | NegativeQueue | None = None
        self.student_bank: MemoryBank | NegativeQueue | None = None
        storage = STORAGE_DTYPES[bank_dtype]
        if self.lambda_global > 0 and negatives == "queue":
            queue = dict(size=self.num_negatives_effective, dim=embed_dim, onto=onto, dtype=storage)
            self.teacher_bank = NegativeQueue(**queue, seed=seed)
            self.student_bank = NegativeQueue(**queue, seed=seed + 1)
        elif self.lambda_global > 0:
            bank = dict(size=num_samples, dim=embed_dim, momentum=momentum, labels=sample_labels,
                        onto=onto, dtype=storage)
            self.teacher_bank = MemoryBank(**bank, seed=seed)
            self.student_bank = MemoryBank(**bank, seed=seed + 1)
        self._negative_generator = torch.Generator().manual_seed(seed + 2)
        self.last_transport: TransportResult | None = None
        self._warned_unconverged = False

    def hparams(self) -> dict[str, Any]:
        """Every hyperparameter by name: all constructor arguments except the data tensor
        ``sample_labels`` (``WCoRDLoss(**loss.hparams(), sample_labels=labels)`` rebuilds it;
        without ``sample_labels`` when ``negatives == "uniform"``)."""
        return dict(self._hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._hparams.items())

    # ------------------------------------------------------------------ forward

    def score(self, teacher_features: Tensor, student_features: Tensor) -> Tensor:
        """The critic on the positive pairs, ``g(t_i, s_i)`` ``[B]`` float32, as a function of
        the raw features ``[B, Dt]`` and ``[B, Ds]`` (heads, projection and critic; differentiable
        in both). Under ``lipschitz="spectral"`` it is ``1/tau``-Lipschitz in each argument."""
        with parametrize.cached(), torch.autocast(device_type=teacher_features.device.type, enabled=False):
            dtype = next(self.teacher_head.parameters()).dtype
            u = self.teacher_head(teacher_features.to(dtype))
            v = self.student_head(student_features.to(dtype))
            return self.critic(u, v)

    def forward(
        self,
        teacher_features: Tensor,
        student_features: Tensor,
        indices: Tensor,
        negatives: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Compute the WCoRD loss for one batch of positive pairs.

        Args:
            teacher_features: ``[B, Dt]`` frozen-teacher features (detached here regardless).
            student_features: ``[B, Ds]`` student features (gradient flows into the student).
            indices: ``[B]`` long dataset index of each pair (its memory-bank row).
            negatives: optional long bank rows to use instead of sampling (for tests and custom
                samplers), used as given: ``[K]`` shared by all anchors, or ``[B, K]`` per anchor
                (whatever ``sharing`` is; ``sharing`` only selects the sampler).
            labels: optional ``[B]`` integer class of each pair, for ``negatives="other_class"``
                (default: ``sample_labels[indices]``); ignored under ``"uniform"``.

        Returns:
            ``{"loss": lambda_global * global + lambda_local * local + penalty, "global": ...,
            "local": ..., "penalty": ...}`` (scalars, float32; a skipped term is a constant 0;
            ``penalty`` is the gradient penalty times ``gp_weight``, 0 unless
            ``lipschitz="gradient_penalty"``), ``"marginal_error"`` (the local solver's marginal
            error relative to the mass per point ``1/B``; 0 without the local term) plus
            ``"teacher_embed"`` and ``"student_embed"``:
            the batch's embeddings (norm <= 1) ``[B, d]``, detached, for :meth:`update_memory`
            after the optimiser step.
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
        if not _is_integer(indices):
            raise ValueError(f"WCoRDLoss: indices must be an integer tensor, got {indices.dtype}")
        if labels is not None and (labels.shape != (batch,) or not _is_integer(labels)):
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
            # Scores with 1/tau ~ 14 lose ~0.05 nats per logit in bf16; compute the terms in float32.
            with torch.autocast(device_type=u.device.type, enabled=False):
                global_term = zero
                penalty = zero
                if self.lambda_global > 0:
                    global_term = self.global_term(u, v, indices, negatives, labels)
                    if self.lipschitz == "gradient_penalty":
                        penalty = self.gradient_penalty(teacher_features, student_features)
                local_term = self.local_term(u, v) if self.lambda_local > 0 else zero
                total = self.lambda_global * global_term + self.lambda_local * local_term + penalty
        return {
            "loss": total,
            "global": global_term,
            "local": local_term,
            "penalty": penalty,
            "marginal_error": zero if self.last_transport is None or self.lambda_local == 0
            else zero.new_tensor(self.last_transport.relative_marginal_error),
            "teacher_embed": u.detach(),
            "student_embed": v.detach(),
        }

    # ------------------------------------------------------------------ terms

    def sample_negatives(self, indices: Tensor) -> Tensor:
        """Negative bank rows for a batch with dataset ``indices`` ``[B]``: ``[K]`` shared by the
        batch (``sharing="batch"``, without replacement) or ``[B, K]`` (``sharing="anchor"``,
        independently per anchor, with replacement).

        All of the batch's indices are excluded (so no anchor meets its own pair among the
        negatives), which caps K at ``num_samples - #distinct(indices)`` in this step.
        """
        if not isinstance(self.teacher_bank, MemoryBank):
            raise ValueError("WCoRDLoss: rows are sampled only from memory banks (lambda_global > 0, "
                             "negatives other than 'queue')")
        distinct = int(torch.unique(indices.detach()).numel())
        k = min(self.num_negatives_effective, self.num_samples - distinct)
        if k < 1:
            raise ValueError(
                f"WCoRDLoss: a batch with {distinct} distinct indices leaves no negatives among "
                f"num_samples={self.num_samples}; use num_samples > batch size"
            )
        if self.sharing == "anchor":
            return self.teacher_bank.sample_negatives_per_anchor(
                k, indices.shape[0], exclude=indices, generator=self._negative_generator
            )
        return self.teacher_bank.sample_negatives(k, exclude=indices, generator=self._negative_generator)

    def global_term(
        self, u: Tensor, v: Tensor, indices: Tensor, negatives: Tensor | None = None,
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
                raise ValueError("WCoRDLoss: under negatives='queue' the negatives are the queue's entries")
            with parametrize.cached():
                positive = self.critic(u, v)  # [B]
                teacher_anchored = self.critic.against(u, self.student_bank.memory.to(u.dtype))  # [B, K]
                student_anchored = self.critic.against_teachers(self.teacher_bank.memory.to(u.dtype), v)
            own = self.teacher_bank.own_rows(indices)  # an anchor's own older embedding is no negative
            teacher_anchored = teacher_anchored.masked_fill(own, -math.inf)
            student_anchored = student_anchored.masked_fill(own, -math.inf)
            return self._contrast(positive, teacher_anchored) + self._contrast(positive, student_anchored)
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
        if self.negatives == "other_class":
            anchor_labels = self.teacher_bank.labels_of(indices) if labels is None else labels
            same = self.teacher_bank.labels_of(negatives) == anchor_labels.to(negatives.device).unsqueeze(1)
            teacher_anchored = teacher_anchored.masked_fill(same, -math.inf)
            student_anchored = student_anchored.masked_fill(same, -math.inf)
        return self._contrast(positive, teacher_anchored) + self._contrast(positive, student_anchored)

    @staticmethod
    def _contrast(positive: Tensor, negative: Tensor) -> Tensor:
        """``-mean_i [p_i - log(exp p_i + sum_k exp n_ik)]`` for ``positive`` [B], ``negative`` [B, K].

        Masked negatives (``-inf``) drop out of the sum; an anchor with none left gives 0.
        """
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
        return (torch.logsumexp(logits, dim=1) - positive).mean()

    def gradient_penalty(self, teacher_features: Tensor, student_features: Tensor) -> Tensor:
        """One-sided gradient penalty at the positive pairs, times ``gp_weight`` (scalar).

        ``gp_weight * mean_i [(|grad_t g(t_i, s_i)| - 1/tau)_+^2 + (|grad_s g(t_i, s_i)| - 1/tau)_+^2]``
        with ``g(t, s) = critic(P(h_T(t)), P(h_S(s)))``, the gradient taken w.r.t. detached
        float32 copies of the features with ``create_graph=True`` when grad mode is on (so the
        penalty trains the heads and the critic, not the student encoder). Under ``no_grad`` it
        is evaluated (detached) for monitoring; under ``inference_mode`` it is 0.
        """
        dtype = next(self.teacher_head.parameters()).dtype
        zero = torch.zeros((), dtype=torch.float32, device=teacher_features.device)
        if torch.is_inference_mode_enabled():
            return zero
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad(), torch.autocast(device_type=teacher_features.device.type, enabled=False):
            t = teacher_features.detach().to(dtype).requires_grad_(True)
            s = student_features.detach().to(dtype).requires_grad_(True)
            score = self.critic(self.teacher_head(t), self.student_head(s))  # [B], pairs independent
            grad_t, grad_s = torch.autograd.grad(score.sum(), (t, s), create_graph=create_graph)
            bound = self.critic.lipschitz_bound  # 1/tau
            excess = (grad_t.float().norm(dim=1) - bound).clamp_min(0).square()
            excess = excess + (grad_s.float().norm(dim=1) - bound).clamp_min(0).square()
            penalty = self.gp_weight * excess.mean()
        return penalty if create_graph else penalty.detach()

    def local_term(self, u: Tensor, v: Tensor) -> Tensor:
        """Primal (entropic OT) term ``sum_ij P_ij C_ij``, scalar in cost units ([0, 2]).

        ``P`` is computed without gradient; the gradient flows through ``C = 1 - u v^T`` only
        (by the envelope theorem this is also the gradient of the regularised OT value).
        """
        if self.local_scope == "global":
            u, v = all_gather_with_grad(u), all_gather_with_grad(v)  # [world * B, d]
        cost = 1.0 - u @ v.t()  # [B, B]
        # Relative tolerance: an absolute 1e-4 would allow 10 % of a point's mass at B = 1024.
        tol = self.sinkhorn_tol / max(cost.shape)
        result = solve_transport(cost, self.local_solver, reg=self.local_reg,  # type: ignore[arg-type]
                                 max_iters=self.sinkhorn_iters, tol=tol)
        self.last_transport = result
        if tol > 0 and not result.converged and not self._warned_unconverged:
            self._warned_unconverged = True  # once per run: the error is logged every step anyway
            warnings.warn(
                f"WCoRD local term: {self.local_solver} stopped after {result.iterations} iterations "
                f"with marginal error {result.relative_marginal_error:.3g} x (1/B), above "
                f"sinkhorn_tol={self.sinkhorn_tol:g}; raise sinkhorn_iters or sinkhorn_eps "
                "(the marginal error is logged as 'marginal_error' in the training history)",
                TransportNotConverged, stacklevel=2)
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
        if isinstance(self.teacher_bank, NegativeQueue) and isinstance(self.student_bank, NegativeQueue):
            self.teacher_bank.enqueue(indices, teacher_embed)
            self.student_bank.enqueue(indices, student_embed)
        elif isinstance(self.teacher_bank, MemoryBank) and isinstance(self.student_bank, MemoryBank):
            self.teacher_bank.update(indices, teacher_embed)
            self.student_bank.update(indices, student_embed)
        # else the local-only variant: no memory to maintain


def _is_integer(x: Tensor) -> bool:
    return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)
