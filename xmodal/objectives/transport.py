"""One front door to the optimal-transport solvers, so a caller can pick one by name.

    solve_transport(cost, "sinkhorn", reg=0.05)   # entropic plan, reg = eps
    solve_transport(cost, "ipot", reg=1.0)        # ~unregularised plan, reg = proximal step beta

Both return a :class:`~xmodal.objectives.sinkhorn.TransportResult` (float32, no grad).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from xmodal.objectives.ipot import ipot
from xmodal.objectives.sinkhorn import TransportResult, sinkhorn_log

__all__ = ["TRANSPORT_METHODS", "DEFAULT_REG", "solve_transport"]

TransportMethod = Literal["sinkhorn", "ipot"]
TRANSPORT_METHODS: tuple[str, ...] = ("sinkhorn", "ipot")
# Default ``reg`` per method, in cost units: WCoRD's eps, and IPOT's step for costs in [0, 2].
DEFAULT_REG: dict[str, float] = {"sinkhorn": 0.05, "ipot": 1.0}


def solve_transport(
    cost: Tensor,
    method: TransportMethod = "sinkhorn",
    reg: float | None = None,
    a: Tensor | None = None,
    b: Tensor | None = None,
    **kwargs: object,
) -> TransportResult:
    """Transport plan for ``cost`` ``[..., n, m]`` with the named solver.

    Args:
        cost: cost matrices ``[..., n, m]``.
        method: ``"sinkhorn"`` (:func:`~xmodal.objectives.sinkhorn.sinkhorn_log`) or ``"ipot"``
            (:func:`~xmodal.objectives.ipot.ipot`).
        reg: the method's regularisation in cost units -- ``eps`` for Sinkhorn, the proximal step
            ``beta`` for IPOT; None takes :data:`DEFAULT_REG`.
        a, b: marginals (uniform if None).
        **kwargs: passed on (``max_iters``, ``tol``; ``inner_iters`` for IPOT).

    Raises:
        ValueError: for an unknown ``method`` or anything the solver rejects.
    """
    if method not in TRANSPORT_METHODS:
        raise ValueError(
            f"solve_transport: method must be one of {TRANSPORT_METHODS}, got {method!r}"
        )
    reg = DEFAULT_REG[method] if reg is None else reg
    if method == "sinkhorn":
        return sinkhorn_log(cost, reg, a=a, b=b, **kwargs)  # type: ignore[arg-type]
    return ipot(cost, a=a, b=b, beta=reg, **kwargs)  # type: ignore[arg-type]
