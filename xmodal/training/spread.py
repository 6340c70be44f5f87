"""How spread out a set of embeddings is: effective rank and mean pairwise cosine.

A student can collapse, its features shrinking onto a few directions or drifting into a narrow
cone, while every logged loss term looks healthy. :func:`fit` therefore logs both numbers for
the student's pooled features of a fixed probe batch after every epoch, under
:data:`RANK_KEY` and :data:`COSINE_KEY` (:func:`student_spread`), and refuses a student whose
features of that batch are NaN or inf or all one point (:func:`spread_problem`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xmodal.data.arrays import Rows

#: per-epoch history keys
RANK_KEY = "spread_rank"
COSINE_KEY = "spread_cosine"
#: the probe batch: the first this many training samples, the same every epoch
PROBE_SAMPLES = 256


def _matrix(features: Tensor | np.ndarray, what: str) -> Tensor:
    """``features`` as a float64 CPU tensor ``[N, D]``, N >= 2, all finite; else ValueError."""
    x = features if isinstance(features, Tensor) else torch.as_tensor(np.asarray(features))
    x = x.detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} needs a feature matrix [N, D]; got shape {tuple(x.shape)}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{what} needs at least 2 rows and 1 column; got shape {tuple(x.shape)}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of the {x.numel()} entries are NaN or inf")
    return x


def effective_rank(features: Tensor | np.ndarray) -> float:
    """Effective rank (Roy & Vetterli, 2007) of the centred ``features`` ``[N, D]``.

    With ``σ_1..σ_K`` the singular values of ``X - mean_rows(X)`` and ``p_k = σ_k / Σ_j σ_j``,
    the effective rank is ``exp(-Σ_k p_k log p_k)`` (``0 log 0 = 0``): ``k`` for ``k``
    orthogonal directions of equal spread, 1 for points on a line, at most ``min(N - 1, D)``.
    Points that all coincide (a zero centred matrix, rank 0) give 0. Computed in float64.

    Raises:
        ValueError: not 2-D, fewer than 2 rows, or non-finite entries.
    """
    x = _matrix(features, "effective_rank")
    sigma = torch.linalg.svdvals(x - x.mean(0))
    total = float(sigma.sum())
    if total <= 0.0:
        return 0.0
    p = sigma[sigma > 0] / total
    return math.exp(float(-(p * p.log()).sum()))


def mean_pairwise_cosine(features: Tensor | np.ndarray) -> float:
    """Mean cosine similarity of the rows of ``features`` ``[N, D]``, uncentred.

    Over all ordered pairs ``i != j``: about 0 for directions spread evenly around the origin,
    1 when every row points the same way (a collapsed cone). Non-negative features (pooled
    after a ReLU) score above 0 however well spread. A zero row has cosine 0 with every other
    row (its pairs still count). Computed in float64, in O(N D).

    Raises:
        ValueError: not 2-D, fewer than 2 rows, or non-finite entries.
    """
    x = _matrix(features, "mean_pairwise_cosine")
    norms = x.norm(dim=1, keepdim=True)
    units = torch.where(norms > 0, x / norms.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    n = x.shape[0]
    # Σ_{i,j} u_i·u_j = |Σ_i u_i|²; the diagonal adds 1 per non-zero row
    pairs = float(units.sum(0).square().sum()) - float((norms > 0).sum())
    return pairs / (n * (n - 1))


def spread_probe(dataset: Any, modality: str, limit: int = PROBE_SAMPLES) -> Rows | None:
    """The fixed probe batch: ``modality`` of the first ``min(limit, len(dataset))`` rows.

    Of ``dataset``, read when sliced; None where the dataset cannot be read by column (no
    :meth:`~xmodal.data.arrays.SplitData.read`) or has fewer than 2 rows.
    """
    if not callable(getattr(dataset, "read", None)) or modality not in dataset:
        return None
    rows = Rows(dataset, modality, slice(0, limit))
    return rows if len(rows) >= 2 else None


@torch.no_grad()
def student_spread(
    encoder: nn.Module, probe: Rows, device: torch.device | str, batch_size: int = PROBE_SAMPLES
) -> dict[str, float]:
    """``{RANK_KEY: effective rank, COSINE_KEY: mean pairwise cosine}`` of ``encoder``'s features.

    Its pooled features of ``probe``, read and encoded ``batch_size`` rows at a time. The
    encoder runs in eval mode (BatchNorm uses, and does not update, its running statistics)
    and every module gets its mode back after; no gradient is kept; the random state of the
    CPU and of ``device`` is restored after, so the training's random stream is the same with
    or without this call. Both values are NaN if a feature is NaN or inf.
    """
    device, step = torch.device(device), max(1, batch_size)
    modes = [(m, m.training) for m in encoder.modules()]  # each module's own, mixed or not
    encoder.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            parts = [
                encoder(probe[i : i + step].to(device)).float().cpu()
                for i in range(0, len(probe), step)
            ]
    finally:
        for module, training in modes:
            module.training = training
    features = torch.cat(parts)
    if not torch.isfinite(features).all():
        return {RANK_KEY: math.nan, COSINE_KEY: math.nan}
    return {RANK_KEY: effective_rank(features), COSINE_KEY: mean_pairwise_cosine(features)}


def spread_problem(spread: dict[str, float]) -> str | None:
    """Why the features behind ``spread`` (:func:`student_spread`'s result) are unusable, or None.

    Unusable: some are NaN or inf (both values NaN), or every row is the same point (effective
    rank exactly 0: the centred features are all zero, nothing tells the samples apart).
    """
    rank = spread.get(RANK_KEY)
    if rank is None:
        return None
    if math.isnan(rank):
        return "some are NaN or inf"
    if rank == 0.0:
        return "they are all the same point (effective rank 0)"
    return None
