"""IPOT: the inexact proximal point method for (unregularised) optimal transport.

Xie et al., UAI 2019. Each outer step
``T <- argmin_{T in Pi(a, b)} <T, C> + beta * KL(T || T_prev)`` is solved inexactly by
``inner_iters`` Sinkhorn scalings of ``exp(-C / beta) * T_prev``; unlike entropic Sinkhorn, the
plan approaches the unregularised optimal plan as outer steps accumulate. Everything is kept in
the log domain; runs under ``torch.no_grad()`` and in float32, on batches ``[..., n, m]``.
Its settings come in :class:`~xmodal.objectives.sinkhorn.TransportOptions` (``ipot_beta``).

Details (the algorithm, choosing ``beta``, numerics): docs/optimal-transport.md.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xmodal.objectives.sinkhorn import (
    _EXP_FLOOR,
    _TINY,
    TransportOptions,
    TransportResult,
    _check_cost,
    _col_lse,
    _prepare,
    _row_lse,
    _total_cost,
)

__all__ = ["ipot"]

# Convergence (marginal error and plan movement) is checked every this many outer steps.
_CHECK_EVERY = 10


def ipot(
    cost: Tensor,
    options: TransportOptions,
    a: Tensor | None = None,
    b: Tensor | None = None,
    inner_iters: int = 1,
) -> TransportResult:
    """Approximately optimal (unregularised) transport plan by IPOT.

    Args:
        cost: cost matrices ``C`` ``[..., n, m]`` (any float dtype; cast to float32; finite).
            Leading dimensions are independent problems solved together.
        options: ``ipot_beta`` (the proximal step, in the units of ``C``), ``sinkhorn_iters``
            (the most outer steps) and ``sinkhorn_tol``, checked by
            :class:`~xmodal.objectives.sinkhorn.TransportOptions`: stop once both the largest
            marginal error and the largest change of any plan entry since the previous check
            fall below ``sinkhorn_tol`` times the mass per point. Checked every
            :data:`_CHECK_EVERY` outer steps, so a run stops at the earliest after
            ``2 * _CHECK_EVERY`` steps.
        a: row marginal ``[n]`` or ``[..., n]`` (batch dims broadcastable to the cost's;
            non-negative, summing to 1 within 1e-4 per problem); uniform ``1/n`` if None.
        b: column marginal ``[m]`` or ``[..., m]``, same rules; uniform ``1/m`` if None.
        inner_iters: scaling iterations per proximal step (>= 1; the paper uses 1).

    Returns:
        :class:`~xmodal.objectives.sinkhorn.TransportResult`: plan ``[..., n, m]`` and cost
        ``<plan, C>`` ``[...]`` in float32, the number of outer steps, and the final marginal
        error. The column marginals are exact up to rounding; the rows carry the error.

    Raises:
        ValueError: naming the argument, for a cost that is not ``[..., n, m]`` or not finite,
            ``inner_iters`` out of range, or a marginal with the wrong shape, negative or
            non-finite entries, or a mass other than 1.
    """
    _check_cost(cost, "ipot")
    if not (
        isinstance(inner_iters, int) and not isinstance(inner_iters, bool) and inner_iters >= 1
    ):
        raise ValueError(f"ipot: inner_iters must be an int >= 1, got {inner_iters!r}")
    mass_tol = options.absolute_tol(cost)  # sinkhorn_tol in probability mass

    with torch.no_grad(), torch.autocast(device_type=cost.device.type, enabled=False):
        c, _, a_w, b_w, _ = _prepare(cost, a, b, "ipot")
        log_a, log_b = a_w.log(), b_w.log()
        inv = -1.0 / options.ipot_beta  # log G = inv * C
        m = c.shape[-1]
        log_t = torch.zeros_like(c)  # log T, T = 1 1^T initially (paper)
        log_s = torch.full(c.shape[:-2] + (m,), -math.log(m), dtype=torch.float32, device=c.device)
        buf = torch.empty_like(c)
        plan = torch.empty_like(c)
        prev: Tensor | None = None  # plan at the previous check
        err = moved = math.inf
        iterations = 0
        for iterations in range(1, options.sinkhorn_iters + 1):
            log_t.add_(c, alpha=inv)  # log Q = log G + log T
            for _ in range(inner_iters):
                log_d = log_a - _row_lse(torch.add(log_t, log_s.unsqueeze(-2), out=buf))
                log_s = log_b - _col_lse(torch.add(log_t, log_d.unsqueeze(-1), out=buf))
            log_t.add_(log_d.unsqueeze(-1)).add_(
                log_s.unsqueeze(-2)
            )  # log T = log Q + log delta + log sigma
            last = iterations == options.sinkhorn_iters
            if iterations % _CHECK_EVERY == 0 or last:
                torch.threshold_(torch.clamp(log_t, min=_EXP_FLOOR, out=plan).exp_(), _TINY, 0.0)
                err_t = torch.maximum(
                    (plan.sum(-1) - a_w).abs().amax(), (plan.sum(-2) - b_w).abs().amax()
                )
                if prev is None:
                    err, moved = float(err_t), math.inf
                    prev = plan.clone()
                else:
                    moved_t = prev.sub_(plan).abs_().amax()
                    err, moved = torch.stack([err_t, moved_t]).tolist()
                    prev.copy_(plan)
                if max(err, moved) < mass_tol or last:
                    break
        total = _total_cost(plan, c)
    return TransportResult(
        plan=plan,
        cost=total,
        iterations=iterations,
        marginal_error=err,
        converged=max(err, moved) < mass_tol,
    )
