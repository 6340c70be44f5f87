"""Baselines that WCoRD is compared against, as registered distillation methods.

Importing this package registers ``kd`` (Hinton), ``fitnet`` (feature regression through a
connector), ``crd`` (NCE against memory banks), ``rkd`` (distance + angle), ``pkt``
(probabilistic transfer) and ``infonce`` (ImageBind's symmetric in-batch InfoNCE) in
``METHODS``; each is an :class:`~xmodal.objectives.objective.Objective` with its options
dataclass beside it, trained by the same loop as WCoRD.
"""

from xmodal.objectives.baselines.crd import CRDConfig, CRDObjective, nce_loss
from xmodal.objectives.baselines.fitnet import FitNetConfig, FitNetObjective
from xmodal.objectives.baselines.infonce import InfoNCEConfig, InfoNCEObjective
from xmodal.objectives.baselines.kd import KDConfig, KDObjective, kd_loss
from xmodal.objectives.baselines.pkt import (
    PKTConfig,
    PKTObjective,
    pkt_conditional_probabilities,
    pkt_loss,
)
from xmodal.objectives.baselines.rkd import (
    RKDConfig,
    RKDObjective,
    rkd_angle,
    rkd_distance,
)

__all__ = [
    "CRDConfig",
    "CRDObjective",
    "FitNetConfig",
    "FitNetObjective",
    "InfoNCEConfig",
    "InfoNCEObjective",
    "KDConfig",
    "KDObjective",
    "PKTConfig",
    "PKTObjective",
    "RKDConfig",
    "RKDObjective",
    "kd_loss",
    "nce_loss",
    "pkt_conditional_probabilities",
    "pkt_loss",
    "rkd_angle",
    "rkd_distance",
]
