"""Layer 3: training objectives, each an :class:`Objective` registered in ``METHODS``.

WCoRD (global dual + local primal term) and its variants, the baselines (KD, FitNet, CRD, RKD,
PKT, InfoNCE), ``supervised`` and ``none``; with their building blocks (optimal transport,
memory banks and queues, critics), which take their method's options dataclass as it is.
"""

from xmodal.core.deprecation import former_names
from xmodal.objectives import supervised, untrained  # noqa: F401  (registers the references)
from xmodal.objectives.critic import (
    CRITICS,
    LIPSCHITZ_MODES,
    BilinearCritic,
    Critic,
    DotCritic,
    MLPCritic,
    ProjectionHead,
    build_critic,
)
from xmodal.objectives.ipot import ipot
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.memory_options import MemoryOptions
from xmodal.objectives.negative_queue import NegativeQueue
from xmodal.objectives.objective import NEEDS, Objective, ObjectiveContext
from xmodal.objectives.sinkhorn import (
    TransportNotConverged,
    TransportOptions,
    TransportResult,
    sinkhorn_log,
)
from xmodal.objectives.transport import TRANSPORT_METHODS, solve_transport, solver_for
from xmodal.objectives.wcord import WCoRDGlobal, WCoRDLocal, WCoRDLoss, WCoRDOptions

__all__ = [
    "CRITICS",
    "LIPSCHITZ_MODES",
    "NEEDS",
    "TRANSPORT_METHODS",
    "BilinearCritic",
    "Critic",
    "DotCritic",
    "MLPCritic",
    "MemoryBank",
    "MemoryOptions",
    "NegativeQueue",
    "Objective",
    "ObjectiveContext",
    "ProjectionHead",
    "TransportNotConverged",
    "TransportOptions",
    "TransportResult",
    "WCoRDOptions",
    "WCoRDGlobal",
    "WCoRDLocal",
    "WCoRDLoss",
    "build_critic",
    "ipot",
    "sinkhorn_log",
    "solve_transport",
    "solver_for",
]

#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"WCoRDConfig": "WCoRDOptions"}, globals())
