"""Cross-modal retrieval probe: find a test sample's teacher embedding from its student's.

``s2t`` ranks the teacher embeddings of all test samples for a student embedding; ``t2s``
the reverse.

The two spaces are aligned by a ridge least-squares map ``W`` from standardised student to
standardised teacher features, fitted on train pairs (strength chosen on val by mean
recall@1, then refitted on train + val); test samples are ranked by cosine similarity between
``x_s W`` and ``x_t``. Metrics: recall@1/5/10 and median rank, in both directions.

Details (why this alignment, what it measures): docs/probes.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from xmodal.core.checks import each, positive, require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import PROBES
from xmodal.evaluation.linear_probe import require_finite, standardiser

RECALL_AT = (1, 5, 10)
METRICS = tuple(f"{d}_recall@{k}" for d in ("s2t", "t2s") for k in RECALL_AT) + (
    "s2t_median_rank",
    "t2s_median_rank",
)


@dataclass
class RetrievalProbeOptions:
    """Options of the retrieval probe.

    Attributes:
        ridge_grid: candidate ridge strengths of the student -> teacher map (per sample, on
            standardised features), chosen by mean val recall@1.
    """

    ridge_grid: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0])

    def __post_init__(self) -> None:
        require(self, {"ridge_grid": each(positive())})


def match_ranks(queries: Tensor, gallery: Tensor) -> Tensor:
    """Rank (1 = best) of ``gallery[i]`` among all gallery rows for ``queries[i]``, by cosine.

    Ties count against the match. ``[N, D]``, ``[N, D]`` -> ``[N]`` long.
    """
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    g = torch.nn.functional.normalize(gallery.double(), dim=1)
    sims = q @ g.T
    own = sims.diagonal().unsqueeze(1)
    others = sims >= own
    return others.sum(1)  # the match itself counts once: rank >= 1


def ridge_map(x: Tensor, y: Tensor, strength: float) -> Tensor:
    """``W`` ``[Dx, Dy]`` minimising ``|x W - y|^2 / N + strength * |W|^2`` (float64)."""
    x, y = x.double(), y.double()
    gram = x.T @ x / len(x) + strength * torch.eye(x.shape[1], dtype=torch.float64)
    w: Tensor = torch.linalg.solve(gram, x.T @ y / len(x))
    return w


def _retrieval_metrics(student: Tensor, teacher: Tensor) -> dict[str, float]:
    out = {}
    for direction, ranks in (
        ("s2t", match_ranks(student, teacher)),
        ("t2s", match_ranks(teacher, student)),
    ):
        for k in RECALL_AT:
            out[f"{direction}_recall@{k}"] = float((ranks <= k).double().mean())
        out[f"{direction}_median_rank"] = float(ranks.double().median())
    return out


@PROBES.register("retrieval", "cross-modal retrieval between teacher and student test embeddings")
class RetrievalProbe:
    """Student <-> teacher retrieval of the same test samples, through a linear alignment."""

    options = RetrievalProbeOptions

    metrics = METRICS
    consumes_pairs = True  # reads the teacher's features as well as the student's

    def __init__(self, config: RetrievalProbeOptions | None = None) -> None:
        self.config = config or RetrievalProbeOptions()

    def evaluate_pairs(
        self, teacher: dict[str, Tensor], student: dict[str, Tensor]
    ) -> dict[str, float]:
        """Recall@k and median rank in both directions, on the test split.

        ``teacher``/``student``: ``{"train"|"val"|"test": features [N_split, D]}``, row i of
        both the same sample. Returns the metrics plus ``ridge`` and ``val_recall@1``.
        """
        for side, feats in (("teacher", teacher), ("student", student)):
            for split in ("train", "val", "test"):
                require_finite("retrieval probe", {f"{side} {split}": feats[split]})
                if len(feats[split]) != len(teacher[split]):
                    raise ValueError(
                        f"retrieval probe: {split} has {len(student[split])} student "
                        f"and {len(teacher[split])} teacher rows"
                    )
        s_norm, t_norm = standardiser(student["train"]), standardiser(teacher["train"])
        best, best_ridge = -1.0, self.config.ridge_grid[0]
        for ridge in self.config.ridge_grid:
            w = ridge_map(s_norm(student["train"]), t_norm(teacher["train"]), ridge)
            m = _retrieval_metrics(s_norm(student["val"]) @ w, t_norm(teacher["val"]))
            score = (m["s2t_recall@1"] + m["t2s_recall@1"]) / 2
            if score > best:
                best, best_ridge = score, ridge
        s_all = torch.cat([student["train"], student["val"]])
        t_all = torch.cat([teacher["train"], teacher["val"]])
        s_norm, t_norm = standardiser(s_all), standardiser(t_all)
        w = ridge_map(s_norm(s_all), t_norm(t_all), best_ridge)
        metrics = _retrieval_metrics(s_norm(student["test"]) @ w, t_norm(teacher["test"]))
        return {**metrics, "ridge": best_ridge, "val_recall@1": best}


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"RetrievalProbeConfig": "RetrievalProbeOptions"}, globals())
