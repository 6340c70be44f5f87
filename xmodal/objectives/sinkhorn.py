"""Entropic optimal transport solved by Sinkhorn iterations in the log domain.

Solves ``P = argmin_{P in Pi(a, b)} <P, C> - eps * H(P)`` for a batch of cost matrices. The
iterations update the scaled dual potentials ``alpha = f / eps``, ``beta = g / eps`` with
``logsumexp`` instead of multiplying by ``exp(-C / eps)``, so small ``eps`` (1e-3 on costs in
[0, 2], i.e. exponents down to -2000) neither underflows to 0 nor produces NaN.

The solver is a fixed-point procedure that WCoRD uses as a constant: it runs under
``torch.no_grad()`` (the local loss differentiates ``<P, C>`` through ``C`` only) and always in
float32, also when called inside ``torch.autocast``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TransportResult", "sinkhorn_log"]

# Checking convergence costs one pass over [..., n, m] plus a host sync (``.item()``); checking
# every few iterations keeps that overhead small while stopping at most this many iterations late.
_CHECK_EVERY = 5


@dataclass
class TransportResult:
    """Output of :func:`sinkhorn_log`.

    Attributes:
        plan: transport plan ``[..., n, m]``, float32, non-negative; its rows sum to ``a`` and
            its columns to ``b`` up to ``marginal_error``. Total mass 1 per problem.
        cost: transport cost ``<plan, C>`` per problem, ``[...]``, float32, in the units of ``C``
            (the entropy term is not included).
        iterations: number of full Sinkhorn iterations run (one row and one column update each).
        marginal_error: ``max |plan.sum(-1) - a|`` and ``|plan.sum(-2) - b|`` over all entries of
            all problems in the batch, at stop (absolute probability mass).
    """

    plan: Tensor
    cost: Tensor
    iterations: int
    marginal_error: float


def _log_marginal(w: Tensor | None, size: int, name: str, cost: Tensor) -> Tensor:
    """``log`` of a marginal ``[..., size]`` (uniform when ``w`` is None), float32."""
    if w is None:
        return torch.full((size,), -math.log(size), dtype=torch.float32, device=cost.device)
    if w.dim() < 1 or w.shape[-1] != size:
        raise ValueError(
            f"sinkhorn_log: {name} must have shape [..., {size}] to match cost "
            f"{tuple(cost.shape)}, got {tuple(w.shape)}"
        )
    return w.detach().to(device=cost.device, dtype=torch.float32).log()


def sinkhorn_log(
    cost: Tensor,
    eps: float,
    a: Tensor | None = None,
    b: Tensor | None = None,
    max_iters: int = 100,
    tol: float = 1e-6,
) -> TransportResult:
    """Entropic OT plan between marginals ``a`` and ``b`` for the cost ``C``.

    Args:
        cost: cost matrices ``C`` ``[..., n, m]`` (any float dtype; cast to float32). Leading
            dimensions are independent problems solved together.
        eps: entropic regularisation (> 0), in the units of ``C``. Smaller is closer to exact
            OT but needs more iterations.
        a: row marginal ``[n]`` or ``[..., n]`` (positive, summing to 1); uniform ``1/n`` if None.
        b: column marginal ``[m]`` or ``[..., m]`` (positive, summing to 1); uniform ``1/m`` if None.
        max_iters: maximum number of iterations (>= 1).
        tol: stop as soon as the largest absolute marginal error falls below this (>= 0; 0 runs
            all ``max_iters``). Checked every few iterations. In float32 the potentials reach
            ``max(C)/eps``, so the attainable relative accuracy of the plan is about
            ``1e-7 * max(C) / eps`` (~1e-4 at eps=1e-3 on costs in [0, 2]).

    Returns:
        :class:`TransportResult` with the plan ``[..., n, m]`` and cost ``[...]`` in float32.
    """
    if not isinstance(cost, Tensor) or cost.dim() < 2:
        shape = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
        raise ValueError(f"sinkhorn_log: cost must be a tensor [..., n, m], got {shape}")
    if cost.shape[-1] == 0 or cost.shape[-2] == 0:
        raise ValueError(f"sinkhorn_log: cost must have n, m >= 1, got shape {tuple(cost.shape)}")
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"sinkhorn_log: eps must be a finite number > 0, got {eps!r}")
    if not (isinstance(max_iters, int) and max_iters >= 1):
        raise ValueError(f"sinkhorn_log: max_iters must be an int >= 1, got {max_iters!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"sinkhorn_log: tol must be a number >= 0, got {tol!r}")

    n, m = cost.shape[-2], cost.shape[-1]
    # Autocast would run logsumexp/exp in bf16/fp16 where exponents of -C/eps lose all precision.
    with torch.no_grad(), torch.autocast(device_type=cost.device.type, enabled=False):
        c = cost.detach().to(torch.float32)
        log_a = _log_marginal(a, n, "a", c)
        log_b = _log_marginal(b, m, "b", c)
        neg_c = c / -eps  # log of the Gibbs kernel, [..., n, m]
        alpha = torch.zeros(c.shape[:-1], dtype=torch.float32, device=c.device)  # [..., n]
        beta = torch.zeros(c.shape[:-2] + (m,), dtype=torch.float32, device=c.device)  # [..., m]

        def plan_and_error() -> tuple[Tensor, float]:
            plan = torch.exp(neg_c + alpha.unsqueeze(-1) + beta.unsqueeze(-2))
            row_err = (plan.sum(-1) - log_a.exp()).abs().max()
            col_err = (plan.sum(-2) - log_b.exp()).abs().max()
            return plan, float(torch.maximum(row_err, col_err))

        plan: Tensor | None = None
        err = math.inf
        iterations = 0
        for iterations in range(1, max_iters + 1):
            alpha = log_a - torch.logsumexp(neg_c + beta.unsqueeze(-2), dim=-1)
            beta = log_b - torch.logsumexp(neg_c + alpha.unsqueeze(-1), dim=-2)
            if iterations % _CHECK_EVERY == 0 or iterations == max_iters:
                plan, err = plan_and_error()
                if err < tol or iterations == max_iters:
                    break
        assert plan is not None  # the last iteration always checks
        total = (plan * c).sum(dim=(-2, -1))
    return TransportResult(plan=plan, cost=total, iterations=iterations, marginal_error=err)
