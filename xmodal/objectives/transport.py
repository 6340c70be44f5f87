"""One front door to the optimal-transport solvers: the one ``options.local_solver`` names.

    solve_transport(cost, TransportOptions(sinkhorn_eps=0.05))   # entropic plan
    solve_transport(cost, TransportOptions(local_solver="ipot"))  # ~unregularised plan

Both solvers take the same :class:`~xmodal.objectives.sinkhorn.TransportOptions` (WCoRD passes
its :class:`~xmodal.objectives.wcord.WCoRDOptions`, which is one) and return a
:class:`~xmodal.objectives.sinkhorn.TransportResult` (float32, no grad). A method that solves
every step picks its solver once (:func:`solver_for`) and calls it with its options directly.
"""

from __future__ import annotations

import typing
from typing import Protocol

from torch import Tensor

from xmodal.objectives.ipot import ipot
from xmodal.objectives.sinkhorn import TransportOptions, TransportResult, sinkhorn_log

__all__ = [
    "SOLVERS",
    "TRANSPORT_METHODS",
    "Solver",
    "TransportOptions",
    "solve_transport",
    "solver_for",
]

#: the solvers ``local_solver`` may name
TRANSPORT_METHODS: tuple[str, ...] = typing.get_args(
    typing.get_type_hints(TransportOptions)["local_solver"]
)


class Solver(Protocol):
    """An OT solver: ``(cost [..., n, m], options, a, b) -> TransportResult``."""

    def __call__(
        self,
        cost: Tensor,
        options: TransportOptions,
        a: Tensor | None = None,
        b: Tensor | None = None,
    ) -> TransportResult:
        """The plan for ``cost`` under ``options`` between marginals ``a`` and ``b``."""
        ...


#: each solver by the name ``local_solver`` gives it
SOLVERS: dict[str, Solver] = {"sinkhorn": sinkhorn_log, "ipot": ipot}


def solver_for(options: TransportOptions) -> Solver:
    """The solver ``options.local_solver`` names (:data:`SOLVERS`), to call with ``options``."""
    return SOLVERS[options.local_solver]


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
    return solver_for(options)(cost, options, a=a, b=b)
