"""Baselines that WCoRD is compared against, as registered distillation methods.

Importing this package registers ``kd`` (Hinton), ``fitnet`` (feature regression through a
connector), ``crd`` (NCE against memory banks), ``rkd`` (distance + angle), ``pkt``
(probabilistic transfer) and ``infonce`` (ImageBind's symmetric in-batch InfoNCE) in
``METHODS``; each is an :class:`~xmodal.objectives.objective.Objective` with its options
dataclass beside it, trained by the same loop as WCoRD.
"""

from xmodal.core.deprecation import former_names
from xmodal.objectives.baselines.crd import CRDObjective, CRDOptions, nce_loss
from xmodal.objectives.baselines.fitnet import FitNetObjective, FitNetOptions
from xmodal.objectives.baselines.infonce import InfoNCEObjective, InfoNCEOptions
from xmodal.objectives.baselines.kd import KDObjective, KDOptions, kd_loss
from xmodal.objectives.baselines.pkt import (
    PKTObjective,
    PKTOptions,
    pkt_conditional_probabilities,
    pkt_loss,
)
from xmodal.objectives.baselines.rkd import (
    RKDObjective,
    RKDOptions,
    rkd_angle,
    rkd_distance,
)

__all__ = [
    "CRDOptions",
    "CRDObjective",
    "FitNetOptions",
    "FitNetObjective",
    "InfoNCEOptions",
    "InfoNCEObjective",
    "KDOptions",
    "KDObjective",
    "PKTOptions",
    "PKTObjective",
    "RKDOptions",
    "RKDObjective",
    "kd_loss",
    "nce_loss",
    "pkt_conditional_probabilities",
    "pkt_loss",
    "rkd_angle",
    "rkd_distance",
]

#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(
    __name__,
    {
        "CRDConfig": "CRDOptions",
        "FitNetConfig": "FitNetOptions",
        "InfoNCEConfig": "InfoNCEOptions",
        "KDConfig": "KDOptions",
        "PKTConfig": "PKTOptions",
        "RKDConfig": "RKDOptions",
    },
    globals(),
)
