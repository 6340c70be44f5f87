"""Projection heads and the Lipschitz-constrained critics of WCoRD's dual (global) term.

A critic scores a teacher/student pair ``g(t, s) = c(u, v)`` on the projections
``u = P(h_T(t))``, ``v = P(h_S(s))`` of linear heads' outputs: ``P`` is the unit ball or the
sphere (:data:`PROJECTIONS`); ``c`` is ``dot``, ``bilinear`` or ``mlp``, scaled by ``1/tau``
(:data:`CRITICS`); the constraint is ``spectral``, ``gradient_penalty`` or ``none``
(:data:`LIPSCHITZ_MODES`). Under ``spectral``, ``g`` is ``1/tau``-Lipschitz in ``t`` and ``s``.
Critics always take the teacher side first: ``forward``, ``against``, ``against_teachers``.
A critic takes its method's options as they are (:class:`CriticOptions`: ``tau``, ``embed_dim``,
``critic``, ``critic_hidden``), whose ranges the options dataclass checks.

Details: docs/critic.md (why the unit ball: docs/lipschitz-critic.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.checkpoint import checkpoint

__all__ = [
    "CriticOptions",
    "LIPSCHITZ_MODES",
    "PROJECTIONS",
    "project",
    "spectral_linear",
    "CRITICS",
    "ProjectionHead",
    "Critic",
    "DotCritic",
    "BilinearCritic",
    "MLPCritic",
    "build_critic",
]

LIPSCHITZ_MODES = ("spectral", "gradient_penalty", "none")
"""How the critic's Lipschitz constraint is enforced: spectral norm on the heads and the
critic's weights, a gradient penalty on the critic's inputs, or not at all."""

CRITICS = ("dot", "bilinear", "mlp")
"""Critic forms on embeddings of norm <= 1: ``<u, v>/tau``, ``u^T W v/tau``, ``MLP([u; v])/tau``."""

PROJECTIONS = ("ball", "sphere")
"""Where the heads' outputs land: the unit ball (1-Lipschitz projection) or the unit sphere."""

_POWER_ITERATIONS = 3  # see ProjectionHead: keeps the normalised weight within ~2e-4 of 1


def project(z: Tensor, onto: str) -> Tensor:
    """``z`` ``[..., d]`` onto the unit ``"ball"`` (``z / max(1, |z|)``) or ``"sphere"``.

    The sphere is ``z / |z|``.
    """
    if onto == "ball":
        inside: Tensor = z / z.norm(dim=-1, keepdim=True).clamp_min(1.0)
        return inside
    if onto == "sphere":
        unit: Tensor = F.normalize(z, dim=-1)
        return unit
    raise ValueError(f"projection must be one of {PROJECTIONS}, got {onto!r}")


def spectral_linear(linear: nn.Linear, power_iterations: int = _POWER_ITERATIONS) -> nn.Linear:
    """``linear`` with its weight spectrally normalised, the power vectors at the top singular pair.

    Set exactly: torch's 15 warm-up iterations leave sigma up to ~1e-2 off when the top two
    singular values are close.
    """
    spectral_norm(linear, n_power_iterations=power_iterations)  # in place: returns ``linear``
    weight: Any = getattr(linear, "parametrizations").weight  # noqa: B009  (added at run time)
    norm = weight[0]
    with torch.no_grad():
        left, _, right = torch.linalg.svd(weight.original, full_matrices=False)
        norm._u.copy_(left[:, 0])
        norm._v.copy_(right[0])
    return linear


class CriticOptions(Protocol):
    """What a critic reads from its method's options, under the config keys' names.

    E.g. :class:`~xmodal.objectives.wcord.WCoRDOptions`, which checks their ranges.
    """

    @property
    def embed_dim(self) -> int:
        """Size ``d`` of the embeddings scored (>= 1)."""
        ...

    @property
    def tau(self) -> float:
        """Temperature (> 0): every critic is scaled by ``1/tau``."""
        ...

    @property
    def critic(self) -> str:
        """The critic's form, one of :data:`CRITICS`."""
        ...

    @property
    def critic_hidden(self) -> int:
        """Hidden width ``H`` of the ``mlp`` critic (>= 1)."""
        ...


def _check_chunk(value: object) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"MLPCritic: chunk_elements must be an int >= 1, got {value!r}")


class ProjectionHead(nn.Module):
    """Linear map ``in_dim -> out_dim`` followed by projection onto the unit ball or sphere.

    Args:
        in_dim: feature size ``D`` of the encoder output.
        out_dim: embedding size ``d`` of the shared space.
        spectral: wrap the linear layer in ``spectral_norm`` so it is 1-Lipschitz.
        onto: ``"sphere"`` (L2 normalisation, default) or ``"ball"`` (``z / max(1, |z|)``,
            1-Lipschitz; with ``spectral`` the whole head is 1-Lipschitz).
        power_iterations: power iterations per training-mode forward that refresh the estimate
            of the largest singular value. The estimate never exceeds the true value, so the
            normalised weight overshoots 1 by the estimate's lag behind the optimiser; torch's
            default of 1 lets it reach ~2e-3 at high learning rates, 3 keeps it ~2e-4 at a cost
            of a few ``[d, D]`` mat-vecs.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        spectral: bool = True,
        power_iterations: int = 3,
        onto: str = "sphere",
    ) -> None:
        super().__init__()
        if not (isinstance(in_dim, int) and in_dim >= 1):
            raise ValueError(f"ProjectionHead: in_dim must be an int >= 1, got {in_dim!r}")
        if not (isinstance(out_dim, int) and out_dim >= 1):
            raise ValueError(f"ProjectionHead: out_dim must be an int >= 1, got {out_dim!r}")
        if not (isinstance(power_iterations, int) and power_iterations >= 1):
            raise ValueError(
                f"ProjectionHead: power_iterations must be an int >= 1, got {power_iterations!r}"
            )
        if onto not in PROJECTIONS:
            raise ValueError(f"ProjectionHead: onto must be one of {PROJECTIONS}, got {onto!r}")
        linear = nn.Linear(in_dim, out_dim)
        self.linear: nn.Linear = spectral_linear(linear, power_iterations) if spectral else linear
        self.spectral = spectral
        self.onto = onto

    def project(self, x: Tensor) -> Tensor:
        """Features ``[B, in_dim]`` -> unnormalised projection ``z`` ``[B, out_dim]``."""
        z: Tensor = self.linear(x)
        return z

    def forward(self, x: Tensor) -> Tensor:
        """Features ``[B, in_dim]`` -> embeddings ``[B, out_dim]``, float32.

        Of norm 1 (sphere) or <= 1 (ball).
        """
        # Project in float32: under bf16 autocast the unit vectors would be off by ~1e-2.
        return project(self.project(x).float(), self.onto)


class Critic(nn.Module):
    """Base class: a critic ``c(u, v)`` on teacher (``u``) and student (``v``) unit embeddings.

    Args:
        options: :class:`CriticOptions` (kept as ``options``); every critic is scaled by
            ``1/options.tau``.
    """

    def __init__(self, options: CriticOptions) -> None:
        super().__init__()
        self.options = options

    @property
    def lipschitz_bound(self) -> float:
        """``1/tau``: the Lipschitz constant of ``c`` in ``u`` (or ``v``) on the unit ball.

        It holds when the weights are spectrally normalised; the gradient penalty targets it
        otherwise.
        """
        return 1.0 / self.options.tau

    def forward(self, u: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Paired scores: ``u`` ``[B, d]``, ``v`` ``[B, d]`` -> ``c(u_i, v_i)`` ``[B]``."""
        raise NotImplementedError

    def against(self, u: Tensor, others: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Teacher anchors against student candidates, ``c(u_i, others_k)`` ``[B, K]``.

        ``u`` is ``[B, d]``; ``others`` ``[K, d]`` (shared) or ``[B, K, d]`` (per anchor).
        """
        raise NotImplementedError

    def against_teachers(self, others: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Student anchors against teacher candidates, ``c(others_k, v_i)`` ``[B, K]``.

        ``v`` is ``[B, d]``; ``others`` ``[K, d]`` (shared) or ``[B, K, d]`` (per anchor).
        """
        raise NotImplementedError


def _inner(anchors: Tensor, others: Tensor) -> Tensor:
    """``<anchors_i, others_k>`` ``[B, K]``; ``others`` shared ``[K, d]`` or ``[B, K, d]``."""
    if others.dim() == 2:
        # One [B, d] x [d, K] matmul: shared negatives are never gathered per anchor.
        return anchors @ others.t()
    if others.dim() == 3 and others.shape[0] == anchors.shape[0]:
        return torch.bmm(others, anchors.unsqueeze(-1)).squeeze(-1)
    raise ValueError(
        f"critic: others must be [K, d] or [B, K, d] with B={anchors.shape[0]}, "
        f"got {tuple(others.shape)}"
    )


class DotCritic(Critic):
    """``c(u, v) = <u, v> / tau`` on embeddings of norm <= 1; values in ``[-1/tau, 1/tau]``.

    Args:
        options: :class:`CriticOptions` (reads ``tau``). ``1/tau`` is the critic's Lipschitz
            constant in each argument on the unit ball.
    """

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        """Paired scores ``[B]``."""
        return (u * v).sum(-1) / self.options.tau

    def against(self, u: Tensor, others: Tensor) -> Tensor:
        """Teacher anchors against student candidates, ``[B, K]``."""
        return _inner(u, others) / self.options.tau

    def against_teachers(self, others: Tensor, v: Tensor) -> Tensor:
        """Student anchors against teacher candidates, ``[B, K]`` (the dot critic is symmetric)."""
        return _inner(v, others) / self.options.tau


class BilinearCritic(Critic):
    """``c(u, v) = u^T W v / tau`` with ``W`` ``[d, d]`` initialised to the identity.

    Under ``spectral=True`` ``W`` is spectrally normalised (``sigma_max(W) = 1``), so ``c`` is
    ``1/tau``-Lipschitz in each argument on the unit ball and ``|c| <= 1/tau``. Scoring
    against ``K`` shared candidates costs one ``[B, d] x [d, d]`` and one ``[B, d] x [d, K]``
    matmul, like the dot critic.

    Args:
        options: :class:`CriticOptions` (reads ``embed_dim`` ``d`` and ``tau``).
        spectral: spectrally normalise ``W``.
    """

    def __init__(self, options: CriticOptions, spectral: bool = True) -> None:
        super().__init__(options)
        dim = options.embed_dim
        # Linear(v) = W v, so <u, linear(v)> = u^T W v; ``weight`` is W.
        linear = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.eye(dim))
        self.linear: nn.Linear = spectral_linear(linear) if spectral else linear
        self.spectral = spectral

    @property
    def weight(self) -> Tensor:
        """``W`` ``[d, d]`` as used (normalised under ``spectral``)."""
        return self.linear.weight

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        """Paired scores ``[B]``."""
        return (u @ self.weight * v).sum(-1) / self.options.tau

    def against(self, u: Tensor, others: Tensor) -> Tensor:
        """Teacher anchors against student candidates, ``(u^T W) o_k`` ``[B, K]``."""
        return _inner(u @ self.weight, others) / self.options.tau

    def against_teachers(self, others: Tensor, v: Tensor) -> Tensor:
        """Student anchors against teacher candidates, ``o_k^T (W v)`` ``[B, K]``."""
        return _inner(v @ self.weight.t(), others) / self.options.tau


def _mlp_tail(pre: Tensor, bias1: Tensor, w2: Tensor, bias2: Tensor, slope: float) -> Tensor:
    """``w2 . leaky_relu(pre + b1) + b2`` over the last dim: ``[..., H]`` -> ``[...]``."""
    return F.leaky_relu(pre + bias1, slope) @ w2 + bias2


def _mlp_chunk_shared(
    a: Tensor, m: Tensor, bias1: Tensor, w2: Tensor, bias2: Tensor, slope: float
) -> Tensor:
    """Anchors' first-layer part ``a`` ``[B, H]``, shared candidates' part ``m`` ``[Kc, H]``."""
    return _mlp_tail(a.unsqueeze(1) + m.unsqueeze(0), bias1, w2, bias2, slope)  # [B, Kc]


def _mlp_chunk_anchor(
    a: Tensor,
    others: Tensor,
    w_other: Tensor,
    bias1: Tensor,
    w2: Tensor,
    bias2: Tensor,
    slope: float,
) -> Tensor:
    """Anchors' part ``a`` ``[B, H]``, per-anchor candidates ``others`` ``[B, Kc, d]``."""
    return _mlp_tail(a.unsqueeze(1) + others @ w_other.t(), bias1, w2, bias2, slope)  # [B, Kc]


class MLPCritic(Critic):
    """``c(u, v) = (w_2^T act(W_1 [u; v] + b_1) + b_2) / tau``, ``act`` = LeakyReLU(0.2).

    ``W_1`` is ``[H, 2d]`` (``H = hidden``), ``w_2`` is ``[1, H]``. Under ``spectral=True`` both
    are spectrally normalised, so the network is 1-Lipschitz in ``[u; v]`` (LeakyReLU is
    1-Lipschitz) and ``c`` is ``1/tau``-Lipschitz jointly and in each argument.

    Cost of scoring ``B`` anchors against ``K`` candidates: the first layer is split,
    ``W_1 [u; m] = W_1^T-part u + W_1^S-part m``, so each side is projected once (``[B, H]`` and
    ``[K, H]``, or ``[B, K, H]`` for per-anchor candidates); the hidden activations are
    ``[B, K, H]`` (``B * K * H`` multiply-adds for the output layer, ~4 bytes each). They are
    computed in chunks over ``K`` of at most ``chunk_elements`` elements of ``[B, Kc, H]``, and
    each chunk is checkpointed when gradients are needed (recomputed in backward, not stored),
    so peak memory is a few chunks whatever ``K`` is, at the price of a second forward pass.
    E.g. ``B = 64``, ``K = 16384``, ``H = 256``: 2.7e8 hidden units per side and step, 16 chunks
    of 64 MiB with the default budget.

    Args:
        options: :class:`CriticOptions` (reads ``embed_dim`` ``d``, ``critic_hidden`` ``H``
            and ``tau``).
        spectral: spectrally normalise ``W_1`` and ``w_2``.
        chunk_elements: maximum elements of one ``[B, Kc, H]`` chunk (default ``2**24``).
    """

    negative_slope = 0.2

    def __init__(
        self,
        options: CriticOptions,
        spectral: bool = True,
        chunk_elements: int = 2**24,
    ) -> None:
        super().__init__(options)
        _check_chunk(chunk_elements)
        self.chunk_elements = chunk_elements
        dim, hidden = options.embed_dim, options.critic_hidden
        first, second = nn.Linear(2 * dim, hidden), nn.Linear(hidden, 1)
        if spectral:
            first, second = spectral_linear(first), spectral_linear(second)
        self.first: nn.Linear = first
        self.second: nn.Linear = second
        self.spectral = spectral

    def _weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``W_1``'s teacher part ``[H, d]`` and student part, ``b_1``, ``w_2`` ``[H]``, ``b_2``."""
        w1 = self.first.weight
        dim = self.options.embed_dim
        w_t, w_s = w1[:, :dim], w1[:, dim:]
        return w_t, w_s, self.first.bias, self.second.weight[0], self.second.bias[0]

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        """Paired scores ``[B]``."""
        w_t, w_s, b1, w2, b2 = self._weights()
        return (
            _mlp_tail(u @ w_t.t() + v @ w_s.t(), b1, w2, b2, self.negative_slope) / self.options.tau
        )

    def against(self, u: Tensor, others: Tensor) -> Tensor:
        """Teacher anchors against student candidates, ``[B, K]`` (chunked over ``K``)."""
        w_t, w_s, b1, w2, b2 = self._weights()
        return self._score(u @ w_t.t(), others, w_s, b1, w2, b2)

    def against_teachers(self, others: Tensor, v: Tensor) -> Tensor:
        """Student anchors against teacher candidates, ``[B, K]`` (chunked over ``K``)."""
        w_t, w_s, b1, w2, b2 = self._weights()
        return self._score(v @ w_s.t(), others, w_t, b1, w2, b2)

    def _score(
        self, a: Tensor, others: Tensor, w_other: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> Tensor:
        """Anchors' first-layer part ``a`` ``[B, H]`` against ``others``, chunked over ``K``.

        ``others`` ``[K, d]`` / ``[B, K, d]`` with first-layer weight ``w_other`` ``[H, d]``
        -> ``[B, K]``.
        """
        batch = a.shape[0]
        if not (others.dim() == 2 or (others.dim() == 3 and others.shape[0] == batch)):
            raise ValueError(
                f"MLPCritic: others must be [K, d] or [B, K, d] with B={batch}, "
                f"got {tuple(others.shape)}"
            )
        k = others.shape[-2]
        step = max(1, self.chunk_elements // max(1, batch * self.options.critic_hidden))
        shared = others.dim() == 2
        m = others @ w_other.t() if shared else None  # [K, H]: each candidate projected once
        use_checkpoint = torch.is_grad_enabled() and any(
            x.requires_grad for x in (a, others, w_other, b1, w2, b2)
        )
        chunks = []
        fn: Callable[..., Tensor]
        args: tuple[Tensor | float, ...]
        for start in range(0, k, step):
            if m is not None:
                fn, args = (
                    _mlp_chunk_shared,
                    (a, m[start : start + step], b1, w2, b2, self.negative_slope),
                )
            else:
                fn = _mlp_chunk_anchor
                args = (
                    a,
                    others[:, start : start + step],
                    w_other,
                    b1,
                    w2,
                    b2,
                    self.negative_slope,
                )
            chunks.append(
                checkpoint(fn, *args, use_reentrant=False) if use_checkpoint else fn(*args)
            )
        if not chunks:
            return a.new_zeros(batch, 0)
        return torch.cat(chunks, dim=1) / self.options.tau


def build_critic(options: CriticOptions, spectral: bool) -> Critic:
    """The critic ``options.critic`` names (one of :data:`CRITICS`), holding ``options``."""
    if options.critic == "dot":
        return DotCritic(options)
    if options.critic == "bilinear":
        return BilinearCritic(options, spectral=spectral)
    if options.critic == "mlp":
        return MLPCritic(options, spectral=spectral)
    raise ValueError(f"critic must be one of {CRITICS}, got {options.critic!r}")
