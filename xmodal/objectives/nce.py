"""Noise-contrastive estimation as CRD uses it (Tian et al., ICLR 2020).

Shared by ``crd`` and WCoRD's global term under ``estimator="nce"``.

A pair's score ``s`` is read as ``log P = s - log Z``: an unnormalised model whose constant ``Z``
is estimated once, from the first batch, as ``N * mean(exp(scores))``. Each anchor's positive
is told apart from ``K`` negatives drawn from uniform noise ``1/N`` by binary classification,
not by a softmax over the ``K + 1`` scores. Derivation and reference-code notes:
docs/baselines.md (CRD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmodal.objectives.gather import world_size

__all__ = ["nce_loss", "nce_normaliser"]


def nce_loss(log_positive: Tensor, log_negative: Tensor, log_noise: float) -> Tensor:
    """CRD's NCE loss from log-probabilities.

    Args:
        log_positive: ``[B]`` ``log P(pos_i)`` (``score_i - log Z``).
        log_negative: ``[B, K]`` ``log P(neg_ik)``; ``-inf`` for a masked negative (adds 0).
        log_noise: ``log(K * P_n) = log(K / N)``.

    Returns:
        ``-mean_i [log(P_i/(P_i + K/N)) + sum_k log((K/N)/(P_ik + K/N))]`` (scalar, nats).
    """
    positive_term = -F.softplus(log_noise - log_positive)  # log(P / (P + c))
    negative_term = -F.softplus(log_negative - log_noise).sum(1)  # sum_k log(c / (P_k + c))
    return -(positive_term + negative_term).mean()


@torch.no_grad()
def nce_normaliser(positive: Tensor, negative: Tensor, num_samples: int) -> float:
    """CRD's estimate of ``Z``: ``N * mean(exp(scores))`` over the batch's ``[B, K + 1]`` scores.

    ``positive`` ``[B]``, ``negative`` ``[B, K]`` (masked ``-inf`` entries left out); averaged
    over processes so that every replica uses the same constant.
    """
    scores = torch.cat([positive.detach().unsqueeze(1), negative.detach()], 1).float()
    mean = scores.exp().sum() / torch.isfinite(scores).sum()
    if world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(mean)
        mean = mean / world_size()
    return float(mean) * num_samples
