"""Entropic optimal transport solved by Sinkhorn iterations, stabilised in the log domain.

Solves ``P = argmin_{P in Pi(a, b)} <P, C> - eps * H(P)`` for a batch of cost matrices. The
plan is always formed from the scaled dual potentials as ``exp(-C/eps + alpha_i + beta_j)``, so
small ``eps`` neither underflows nor produces NaN. For speed, iterations run in blocks of the
plain scaling form on the absorbed kernel, redone in the log domain when a block is unsafe.
Runs under ``torch.no_grad()`` and in float32: WCoRD uses the plan as a constant.

Both solvers (this one and :func:`xmodal.objectives.ipot.ipot`) read their settings from one
:class:`TransportOptions`, under the names of WCoRD's config keys (``distill.wcord.sinkhorn_eps``
reaches the solver as ``options.sinkhorn_eps``), and the range of each lives there.

Details (the iteration scheme, its safety test, numerics): docs/optimal-transport.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from xmodal.core.checks import Rule, at_least, literal_rules, non_negative, positive, require

__all__ = ["TransportOptions", "TransportResult", "TransportNotConverged", "sinkhorn_log"]

# Iterations per block: the marginal error is checked (one host sync) once per block, so a run
# stops at most this many iterations after reaching ``sinkhorn_tol``. POT checks every 10 as well.
_CHECK_EVERY = 10
# A scaling block is accepted only when ``max log u + max log v`` stays below this (see module doc).
_MAX_LOG_GROWTH = 50.0
# Marginals must sum to 1 within this (absolute), per problem.
_MASS_TOL = 1e-4
# Exponents are clamped to >= _EXP_FLOOR before ``exp``: torch's CPU ``exp`` takes a slow path
# (~10-20x) for arguments whose result would be subnormal or 0, and subnormals also slow the
# matrix-vector products. exp(-87) = 1.65e-38 is the smallest normal float32 it then produces;
# in the plan such entries are set to exactly 0 (they stand for mass below 1.7e-38).
_EXP_FLOOR = -87.0
_TINY = 1.7e-38
_F32_MIN = torch.finfo(torch.float32).min


@dataclass
class TransportOptions:
    """How an optimal-transport plan is solved: the solver and its settings.

    The names are WCoRD's config keys (``distill.wcord.*``); :class:`~xmodal.objectives.wcord.
    WCoRDOptions` is one of these, and each range below is checked here only.

    Attributes:
        sinkhorn_eps: Sinkhorn's entropic regularisation ``eps`` (> 0), in the units of the
            cost. Smaller is closer to exact OT but needs more iterations.
        sinkhorn_iters: most iterations of either solver (>= 1; IPOT: proximal steps).
        sinkhorn_tol: stop once the largest marginal error falls below this many times the
            mass per point, ``1 / max(n, m)`` (>= 0; 0 runs all ``sinkhorn_iters``).
        local_solver: ``sinkhorn`` (entropic plan) or ``ipot`` (approaches the exact plan).
        ipot_beta: IPOT's proximal step (> 0), in the units of the cost (1.0 for costs in
            [0, 2]).
    """

    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 500
    sinkhorn_tol: float = 1e-3
    local_solver: Literal["sinkhorn", "ipot"] = "sinkhorn"
    ipot_beta: float = 1.0

    def transport_rules(self) -> dict[str, Rule]:
        """The range of each field (the Literal aside), for a subclass's ``require``."""
        return {
            "sinkhorn_eps": positive(),
            "sinkhorn_iters": at_least(1),
            "sinkhorn_tol": non_negative(),
            "ipot_beta": positive(),
        }

    def __post_init__(self) -> None:
        require(self, {**self.transport_rules(), **literal_rules(self)})

    def absolute_tol(self, cost: Tensor) -> float:
        """``sinkhorn_tol`` in probability mass for ``cost`` ``[..., n, m]``."""
        return self.sinkhorn_tol / max(cost.shape[-2:])


@dataclass
class TransportResult:
    """Output of :func:`sinkhorn_log` (and of :func:`xmodal.objectives.ipot.ipot`).

    Attributes:
        plan: transport plan ``[..., n, m]``, float32, non-negative; its rows sum to ``a`` and
            its columns to ``b`` up to ``marginal_error``. Total mass 1 per problem.
        cost: transport cost ``<plan, C>`` per problem, ``[...]``, float32, in the units of ``C``
            (the entropy term is not included).
        iterations: number of full iterations run (for Sinkhorn one row and one column update;
            for IPOT one proximal step).
        marginal_error: ``max |plan.sum(-1) - a|`` and ``|plan.sum(-2) - b|`` over all entries of
            all problems in the batch, at stop (absolute probability mass).
        converged: whether the solver stopped because it met ``sinkhorn_tol`` (False when it
            ran out of ``sinkhorn_iters``, and always with ``sinkhorn_tol = 0``).
    """

    plan: Tensor
    cost: Tensor
    iterations: int
    marginal_error: float
    converged: bool = True

    @property
    def relative_marginal_error(self) -> float:
        """``marginal_error`` in units of the uniform mass per point, ``1 / max(n, m)``.

        0.01 means the worst marginal is off by 1 % of one point's mass, whatever the batch size.
        """
        return self.marginal_error * max(self.plan.shape[-2:])


class TransportNotConverged(RuntimeWarning):
    """An OT solver stopped at ``sinkhorn_iters`` with its marginal error above the tolerance."""


# --------------------------------------------------------------------------- input checks


def _check_cost(cost: object, solver: str) -> None:
    if not isinstance(cost, Tensor) or cost.dim() < 2:
        shape = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
        raise ValueError(f"{solver}: cost must be a tensor [..., n, m], got {shape}")
    if cost.shape[-1] == 0 or cost.shape[-2] == 0:
        raise ValueError(f"{solver}: cost must have n, m >= 1, got shape {tuple(cost.shape)}")


def _marginal(
    w: Tensor | None, size: int, name: str, cost: Tensor, solver: str
) -> tuple[Tensor, list[Tensor]]:
    """Marginal ``[size]`` or ``[..., size]`` as float32 on ``cost``'s device, plus lazy stats.

    Returns ``(weights, stats)``: ``stats`` is ``[]`` for the uniform default, else two 0-d
    tensors (smallest entry, largest ``|sum - 1|`` over problems), read later with one host sync
    for all inputs (NaN shows in both). Shape errors are raised here.
    """
    if w is None:
        return torch.full((size,), 1.0 / size, dtype=torch.float32, device=cost.device), []
    if not isinstance(w, Tensor):
        raise ValueError(
            f"{solver}: {name} must be a tensor [..., {size}] or None, got {type(w).__name__}"
        )
    if w.dim() < 1 or w.shape[-1] != size:
        raise ValueError(
            f"{solver}: {name} must have shape [..., {size}] to match cost "
            f"{tuple(cost.shape)}, got {tuple(w.shape)}"
        )
    batch, w_batch = tuple(cost.shape[:-2]), tuple(w.shape[:-1])
    if len(w_batch) > len(batch) or any(
        x != 1 and x != y for x, y in zip(reversed(w_batch), reversed(batch), strict=False)
    ):
        raise ValueError(
            f"{solver}: {name} must have batch dimensions that broadcast to the cost's {batch}, "
            f"got {w_batch} (cost {tuple(cost.shape)}, {name} {tuple(w.shape)})"
        )
    w = w.detach().to(device=cost.device, dtype=torch.float32)
    return w, [w.amin(), (w.sum(-1) - 1.0).abs().amax()]


def _prepare(
    cost: Tensor, a: Tensor | None, b: Tensor | None, solver: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """float32 cost and marginals; validates everything with a single host sync.

    Returns ``(c, row_min, a_w, b_w, has_zero_mass)`` with ``row_min = c.amin(-1)``. Must be
    called under ``no_grad`` with autocast off.
    """
    n, m = cost.shape[-2], cost.shape[-1]
    c = cost.detach().to(torch.float32)
    row_min = c.amin(-1)
    a_w, a_stats = _marginal(a, n, "a", c, solver)
    b_w, b_stats = _marginal(b, m, "b", c, solver)
    # min and max propagate NaN and show inf: one cheap pass each, no [..., n, m] temporaries.
    stats = torch.stack([row_min.amin(), c.amax(), *a_stats, *b_stats]).tolist()
    if not (math.isfinite(stats[0]) and math.isfinite(stats[1])):
        raise ValueError(f"{solver}: cost must be finite (it contains NaN or inf)")
    has_zero = False
    for name, w_stats in (("a", stats[2:4] if a_stats else []), ("b", stats[2 + len(a_stats) :])):
        if not w_stats:
            continue
        w_min, mass_err = w_stats
        if not w_min >= 0:  # also NaN
            raise ValueError(f"{solver}: {name} must be finite and non-negative")
        if not mass_err <= _MASS_TOL:  # also NaN and inf
            raise ValueError(
                f"{solver}: {name} must sum to 1 (within {_MASS_TOL:g}) for every problem"
            )
        has_zero = has_zero or w_min == 0
    return c, row_min, a_w, b_w, has_zero


# --------------------------------------------------------------------------- kernels


def _row_lse(x: Tensor) -> Tensor:
    """``logsumexp`` over the last dim, destroying ``x`` (no temporaries of its size).

    A row that is all ``-inf`` (zero mass) gives about ``-3.4e38``, not NaN.
    """
    mx = x.amax(-1, keepdim=True).clamp_(min=_F32_MIN)
    return x.sub_(mx).clamp_(min=_EXP_FLOOR).exp_().sum(-1).log_().add_(mx.squeeze(-1))


def _col_lse(x: Tensor) -> Tensor:
    """``logsumexp`` over dim -2, destroying ``x``; an all ``-inf`` column gives ~``-3.4e38``."""
    mx = x.amax(-2, keepdim=True).clamp_(min=_F32_MIN)
    return x.sub_(mx).clamp_(min=_EXP_FLOOR).exp_().sum(-2).log_().add_(mx.squeeze(-2))


def _log_iterations(
    c: Tensor, inv: float, log_a: Tensor, log_b: Tensor, beta: Tensor, k: int, buf: Tensor
) -> tuple[Tensor, Tensor]:
    """``k`` log-domain Sinkhorn iterations (row then column update); ``(alpha, beta)``.

    On the kernel ``log K = inv * c``. ``buf`` (shaped like ``c``) is scratch.
    """
    alpha = beta  # placeholder, overwritten in the first iteration
    for _ in range(k):
        alpha = log_a - _row_lse(torch.add(beta.unsqueeze(-2), c, alpha=inv, out=buf))
        beta = log_b - _col_lse(torch.add(alpha.unsqueeze(-1), c, alpha=inv, out=buf))
    return alpha, beta


def _fill_plan(buf: Tensor, c: Tensor, inv: float, alpha: Tensor, beta: Tensor) -> Tensor:
    """``buf <- exp(inv * c + alpha_i + beta_j)``, entries below ~1.7e-38 at 0; no temporaries."""
    torch.add(alpha.unsqueeze(-1), c, alpha=inv, out=buf).add_(beta.unsqueeze(-2))
    return torch.threshold_(buf.clamp_(min=_EXP_FLOOR).exp_(), _TINY, 0.0)


def _total_cost(plan: Tensor, c: Tensor) -> Tensor:
    """``<plan, c>`` per problem, ``[...]``, as a (batched) dot product without a temporary."""
    if plan.dim() == 2:
        return torch.dot(plan.reshape(-1), c.reshape(-1))
    return torch.matmul(plan.flatten(-2).unsqueeze(-2), c.flatten(-2).unsqueeze(-1))[..., 0, 0]


_MatVec = Callable[[Tensor, Tensor], Tensor]


def _matvecs(use_mm: bool, two_d: bool) -> tuple[_MatVec, _MatVec]:
    """``(K v, K^T u)`` products for ``K [..., n, m]``, vectors ``[..., m]`` / ``[..., n]``."""
    if not use_mm:  # exact float32 on devices where matmul may run in TF32
        return (lambda k, v: (k * v.unsqueeze(-2)).sum(-1)), (
            lambda k, u: (k * u.unsqueeze(-1)).sum(-2)
        )
    if two_d:
        return (lambda k, v: torch.mv(k, v)), (lambda k, u: torch.mv(k.t(), u))
    # Batched: a row vector on the left is much faster than [..., n, m] @ [..., m, 1] on CPU.
    return (
        lambda k, v: torch.matmul(v.unsqueeze(-2), k.mT).squeeze(-2),
        lambda k, u: torch.matmul(u.unsqueeze(-2), k).squeeze(-2),
    )


def _use_matmul(device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    return not torch.backends.cuda.matmul.allow_tf32


# --------------------------------------------------------------------------- solver


def sinkhorn_log(
    cost: Tensor,
    options: TransportOptions,
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> TransportResult:
    """Entropic OT plan between marginals ``a`` and ``b`` for the cost ``C``.

    Args:
        cost: cost matrices ``C`` ``[..., n, m]`` (any float dtype; cast to float32; must be
            finite). Leading dimensions are independent problems solved together.
        options: ``sinkhorn_eps`` (the regularisation), ``sinkhorn_iters`` (the most
            iterations) and ``sinkhorn_tol`` (the marginal error to stop at, relative to the
            mass per point), checked by :class:`TransportOptions`. The error is checked every
            :data:`_CHECK_EVERY` iterations (and at the last). In float32 the potentials reach
            ``max(C)/eps``, so the attainable relative accuracy of the plan is about
            ``1e-7 * max(C) / eps`` (~1e-4 at eps=1e-3 on costs in [0, 2]).
        a: row marginal ``[n]`` or ``[..., n]`` (batch dims broadcastable to the cost's;
            non-negative, summing to 1 within 1e-4 per problem); uniform ``1/n`` if None.
        b: column marginal ``[m]`` or ``[..., m]``, same rules; uniform ``1/m`` if None.

    Returns:
        :class:`TransportResult` with the plan ``[..., n, m]`` and cost ``[...]`` in float32.

    Raises:
        ValueError: naming the argument, for a cost that is not ``[..., n, m]`` or not finite,
            or a marginal with the wrong shape, negative or non-finite entries, or a mass
            other than 1.
    """
    _check_cost(cost, "sinkhorn_log")
    mass_tol = options.absolute_tol(cost)  # sinkhorn_tol in probability mass

    # Autocast would run logsumexp/exp in bf16/fp16 where exponents of -C/eps lose all precision.
    with torch.no_grad(), torch.autocast(device_type=cost.device.type, enabled=False):
        c, row_min, a_w, b_w, has_zero = _prepare(cost, a, b, "sinkhorn_log")
        log_a, log_b = a_w.log(), b_w.log()
        inv = -1.0 / options.sinkhorn_eps  # log K = inv * C, folded into every pass, not stored
        buf = torch.empty_like(c)  # the plan / scratch: the only [..., n, m] allocation
        use_scaling = not has_zero
        kv, ktu = _matvecs(_use_matmul(c.device), c.dim() == 2)

        # Both marginals side by side, shaped like [rows | cols], for a 4-op error check.
        batch = c.shape[:-2]
        target = torch.cat(
            [a_w.expand(batch + a_w.shape[-1:]), b_w.expand(batch + b_w.shape[-1:])], -1
        )

        def plan_and_error(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            plan = _fill_plan(buf, c, inv, alpha, beta)
            rows = plan.sum(-1)
            err = torch.cat([rows, plan.sum(-2)], -1).sub_(target).abs_().amax()
            return plan, rows, err

        # Start: potentials that put each row's largest kernel entry at exactly 1 (K <= 1, no row
        # all zero), so the first scaling block can run; it then performs the first iteration
        # exactly as the log-domain update would.
        alpha = row_min / options.sinkhorn_eps
        beta = torch.zeros(c.shape[:-2] + (c.shape[-1],), dtype=torch.float32, device=c.device)
        plan: Tensor | None = None
        rows: Tensor | None = None
        if use_scaling:
            plan = _fill_plan(buf, c, inv, alpha, beta)
            rows = plan.sum(-1)
        iterations = 0
        err = math.inf
        while iterations < options.sinkhorn_iters and not err < mass_tol:
            k = min(_CHECK_EVERY, options.sinkhorn_iters - iterations)
            if use_scaling:
                assert plan is not None and rows is not None  # set before the loop, or below
                # Scaling form on the absorbed kernel K = plan; K @ 1 = rows is already known.
                u = a_w / rows
                v = b_w / ktu(plan, u)
                for _ in range(k - 1):
                    u = a_w / kv(plan, v)
                    v = b_w / ktu(plan, u)
                du, dv = u.log_(), v.log_()
                new_alpha, new_beta = alpha + du, beta + dv
                # NaN or +inf anywhere fails this test too. (A -inf, i.e. a row emptied by an
                # overflow, passes but cannot persist: the next block sees rows = 0, fails, and
                # the log-domain block recomputes alpha from beta.)
                growth = (du.amax(-1) + dv.amax(-1)).amax()
                plan, rows, err_t = plan_and_error(new_alpha, new_beta)
                growth_f, err = torch.stack([growth, err_t]).tolist()
                if growth_f <= _MAX_LOG_GROWTH:
                    alpha, beta = new_alpha, new_beta
                    iterations += k
                    continue
            # Log-domain block: the fallback, and the only path for marginals with zeros. It
            # recomputes alpha from beta, so it continues from the last accepted state.
            alpha, beta = _log_iterations(c, inv, log_a, log_b, beta, k, buf)
            iterations += k
            plan, rows, err_t = plan_and_error(alpha, beta)
            err = float(err_t)
        assert plan is not None  # the loop ran at least once (sinkhorn_iters >= 1)
        total = _total_cost(plan, c)
    return TransportResult(
        plan=plan, cost=total, iterations=iterations, marginal_error=err, converged=err < mass_tol
    )
