"""k-NN probe: cosine k-nearest-neighbour classification with temperature-weighted votes.

The protocol of InstDisc (Wu et al. 2018) as used by DINO (Caron et al. 2021): features are
L2-normalised, each test sample takes the ``k`` most cosine-similar samples of the bank (train
+ val), and each neighbour votes for its class with weight ``exp(similarity / T)``. No
parameters are fitted, so it measures the embedding's geometry as it is; the linear probe
measures what a classifier can read out of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xmodal.core.checks import at_least, positive, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import PROBES
from xmodal.evaluation.linear_probe import accuracies, require_finite


@dataclass
class KNNProbeOptions:
    """Options of the k-NN probe.

    Attributes:
        k: neighbours per test sample (DINO's 20).
        temperature: vote temperature ``T``; weights are ``exp(cosine / T)`` (DINO's 0.07).
    """

    k: int = 20
    temperature: float = 0.07

    def __post_init__(self) -> None:
        require(self, {"k": at_least(1), "temperature": positive()})


@dataclass
class KNNResult:
    """Test metrics (fractions in [0, 1]) and the settings that produced them."""

    accuracy: float
    mean_class_accuracy: float
    k: int
    temperature: float


def knn_votes(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    chunk: int = 1024,
) -> Tensor:
    """Class scores ``[Q, C]``: per class, ``exp(cos / T)`` summed over the ``k`` nearest rows.

    ``bank`` ``[N, D]``, ``bank_labels`` ``[N]``, ``queries`` ``[Q, D]``; the ``k`` most
    cosine-similar bank rows of each query vote for their classes.
    """
    bank = torch.nn.functional.normalize(bank.float(), dim=1)
    queries = torch.nn.functional.normalize(queries.float(), dim=1)
    k = min(k, len(bank))
    scores = []
    for start in range(0, len(queries), chunk):  # bounds memory at chunk x N similarities
        sims, idx = (queries[start : start + chunk] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(sims), num_classes)
        scores.append(votes.scatter_add_(1, bank_labels[idx], (sims / temperature).exp()))
    return torch.cat(scores)


@PROBES.register("knn", "cosine k-NN classification with temperature-weighted votes (k=20, T=0.07)")
class KNNProbe:
    """Scene classification by weighted k-NN on pooled features."""

    options = KNNProbeOptions

    metrics = ("accuracy", "mean_class_accuracy")

    def __init__(self, config: KNNProbeOptions | None = None) -> None:
        self.config = config or KNNProbeOptions()

    def evaluate(
        self,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor],
        num_classes: int,
    ) -> KNNResult:
        """Each split is ``(features [N, D], labels [N])``; train + val form the bank."""
        require_finite("k-NN probe", {"train": train[0], "val": val[0], "test": test[0]})
        bank, bank_labels = torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]])
        votes = knn_votes(
            bank, bank_labels, test[0], num_classes, self.config.k, self.config.temperature
        )
        acc, mca = accuracies(votes, test[1], num_classes)
        return KNNResult(
            accuracy=acc,
            mean_class_accuracy=mca,
            k=self.config.k,
            temperature=self.config.temperature,
        )


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"KNNProbeConfig": "KNNProbeOptions"}, globals())
