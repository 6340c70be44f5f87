"""objectives: the WCoRD loss (global dual + local primal term) and its building blocks."""

from xmodal.objectives.critic import CRITICS, LIPSCHITZ_MODES, DotCritic, ProjectionHead
from xmodal.objectives.memory_bank import MemoryBank
from xmodal.objectives.sinkhorn import TransportResult, sinkhorn_log
from xmodal.objectives.wcord import WCoRDLoss

__all__ = [
    "CRITICS",
    "LIPSCHITZ_MODES",
    "DotCritic",
    "MemoryBank",
    "ProjectionHead",
    "TransportResult",
    "WCoRDLoss",
    "sinkhorn_log",
]
