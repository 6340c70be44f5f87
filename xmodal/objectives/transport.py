"""One front door to the optimal-transport solvers: the one ``options.local_solver`` names.

    solve_transport(cost, TransportOptions(sinkhorn_eps=0.05))   # entropic plan
    solve_transport(cost, TransportOptions(local_solver="ipot"))  # ~unregularised plan

Both solvers take the same :class:`~xmodal.objectives.sinkhorn.TransportOptions` (WCoRD passes
its :class:`~xmodal.objectives.wcord.WCoRDConfig`, which is one) and return a
:class:`~xmodal.objectives.sinkhorn.TransportResult` (float32, no grad).
"""

from __future__ import annotations

import typing

from torch import Tensor

from xmodal.objectives.ipot import ipot
from xmodal.objectives.sinkhorn import TransportOptions, TransportResult, sinkhorn_log

__all__ = ["TRANSPORT_METHODS", "TransportOptions", "solve_transport"]

#: the solvers ``local_solver`` may name
TRANSPORT_METHODS: tuple[str, ...] = typing.get_args(
    typing.get_type_hints(TransportOptions)["local_solver"]
)


def solve_transport(
    cost: Tensor,
    options: TransportOptions,
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> TransportResult:
    """Transport plan for ``cost`` ``[..., n, m]`` by the solver ``options.local_solver`` names.

    Args:
        cost: cost matrices ``[..., n, m]``.
        options: the solver and its settings
            (:class:`~xmodal.objectives.sinkhorn.TransportOptions`), passed as they are to
            :func:`~xmodal.objectives.sinkhorn.sinkhorn_log` or
            :func:`~xmodal.objectives.ipot.ipot`.
        a: row marginal (uniform if None).
        b: column marginal (uniform if None).

    Raises:
        ValueError: for anything the solver rejects.
    """
    if options.local_solver == "sinkhorn":
        return sinkhorn_log(cost, options, a=a, b=b)
    return ipot(cost, options, a=a, b=b)
