"""Baselines that WCoRD is compared against, as registered distillation methods.

Importing this package registers ``kd`` (Hinton), ``fitnet`` (feature regression through a
connector), ``crd`` (NCE against memory banks), ``rkd`` (distance + angle) and ``pkt``
(probabilistic transfer) in the ``losses`` registry; each is trained by the same loop as WCoRD
through the objective interface of :mod:`xmodal.objectives.methods`.
"""

from xmodal.objectives.baselines.config import CRDConfig, FitNetConfig, KDConfig, PKTConfig, RKDConfig
from xmodal.objectives.baselines.crd import CRDObjective, nce_loss
from xmodal.objectives.baselines.fitnet import FitNetObjective
from xmodal.objectives.baselines.kd import KDObjective, kd_loss
from xmodal.objectives.baselines.pkt import PKTObjective, pkt_conditional_probabilities, pkt_loss
from xmodal.objectives.baselines.rkd import RKDObjective, rkd_angle, rkd_distance
from xmodal.objectives.baselines.register import BASELINE_METHODS

__all__ = [
    "BASELINE_METHODS",
    "CRDConfig",
    "CRDObjective",
    "FitNetConfig",
    "FitNetObjective",
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
