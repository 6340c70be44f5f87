"""The ``nearest-centroid`` probe: each test sample takes the class of the nearest class mean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn.functional import normalize

from xmodal.core.checks import literal_rules, require

Split = tuple[Tensor, Tensor]  # features [N, D] float, labels [N] long


@dataclass
class CentroidOptions:
    """Options of ``nearest-centroid`` (``probe.nearest_centroid``), checked at load.

    Attributes:
        metric: ``cosine`` (features and centroids L2-normalised) or ``euclidean``.
    """

    metric: Literal["cosine", "euclidean"] = "cosine"

    def __post_init__(self) -> None:
        require(self, literal_rules(self))


class NearestCentroid:
    """Nearest class centroid of the train + val features; nothing is fitted."""

    options = CentroidOptions
    metrics = ("accuracy",)

    def __init__(self, config: CentroidOptions | None = None) -> None:
        self.config = config or CentroidOptions()

    def evaluate(self, train: Split, val: Split, test: Split, num_classes: int) -> dict[str, float]:
        """Accuracy (a fraction in [0, 1]) on ``test``; a class with no sample is never chosen."""
        x, y = torch.cat([train[0], val[0]]).float(), torch.cat([train[1], val[1]]).long()
        queries = test[0].float()
        if self.config.metric == "cosine":
            x, queries = normalize(x, dim=1), normalize(queries, dim=1)
        counts = torch.bincount(y, minlength=num_classes)
        centroids = torch.zeros(num_classes, x.shape[1]).index_add_(0, y, x)
        centroids = centroids / counts.clamp(min=1).unsqueeze(1)
        if self.config.metric == "cosine":
            centroids = normalize(centroids, dim=1)
        distance = torch.cdist(queries, centroids).masked_fill(counts == 0, float("inf"))
        correct = distance.argmin(1) == test[1].long()
        return {"accuracy": float(correct.float().mean())}
