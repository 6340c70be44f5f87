"""Layer 3: training objectives: WCoRD (global dual + local primal term) and its building
blocks (optimal transport, memory banks, critics), the baselines, and the ``losses`` registry."""

from xmodal.objectives.critic import (CRITICS, LIPSCHITZ_MODES, BilinearCritic, Critic, DotCritic,
                                      MLPCritic, ProjectionHead, build_critic)
from xmodal.objectives.ipot import ipot
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.sinkhorn import TransportNotConverged, TransportResult, sinkhorn_log
from xmodal.objectives.transport import TRANSPORT_METHODS, solve_transport
from xmodal.objectives.wcord import WCoRDLoss

__all__ = [
    "CRITICS", "LIPSCHITZ_MODES", "TRANSPORT_METHODS", "BilinearCritic", "Critic", "DotCritic",
    "MLPCritic", "MemoryBank", "ProjectionHead", "TransportNotConverged", "TransportResult", "WCoRDLoss", "build_critic",
    "ipot", "sinkhorn_log", "solve_transport",
]
