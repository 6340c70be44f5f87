"""Where contrastive methods (WCoRD's global term, CRD) keep their negatives: the options they
share, and the pair of memories (teacher side, student side) those options build: per-sample
memory banks, or FIFO queues that do not grow with the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from xmodal.core.checks import Rule, at_least, holds, positive, within
from xmodal.objectives.embedding_storage import STORAGE_DTYPES
from xmodal.objectives.memory_bank import MemoryBank, negatives_per_step
from xmodal.objectives.negative_queue import NegativeQueue

__all__ = ["Memory", "MemoryOptions", "build_memories"]

Memory = MemoryBank | NegativeQueue


@dataclass
class MemoryOptions:
    """Attributes:
    embed_dim: size ``d`` of the shared embedding space.
    num_negatives: ``K``, negatives per step (capped at ``N - 1``; the queue's length).
    tau: temperature of the scores ``<u, v> / tau``.
    momentum: memory-bank momentum ``mu`` in [0, 1) (banks only).
    negatives: ``uniform`` bank rows, ``other_class`` (only other classes' rows count;
        needs labels) or ``queue`` (every entry of a FIFO of the last K gathered embeddings).
    sharing: ``batch`` (one set of negatives per step) or ``anchor`` (a set per anchor).
    bank_dtype: storage of the banks or queues: ``float32``, ``bfloat16`` or ``float16``.
    """

    embed_dim: int = 128
    num_negatives: int = 16384
    tau: float = 0.07
    momentum: float = 0.5
    negatives: Literal["uniform", "other_class", "queue"] = "uniform"
    sharing: Literal["batch", "anchor"] = "batch"
    bank_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def memory_rules(self) -> dict[str, Rule]:
        """The range of each of these fields (Literal fields aside), for the subclass's ``require``."""
        return {
            "embed_dim": at_least(1),
            "num_negatives": at_least(1),
            "tau": positive(),
            "momentum": within(0, 1, high_open=True),
        }

    def memory_relations(self) -> dict[str, Rule]:
        """Rules between these fields, checked once each field is valid on its own."""
        return {
            "sharing": holds(
                self.negatives != "queue" or self.sharing == "batch",
                "batch under negatives=queue (every anchor scores the whole queue)",
            )
        }


def build_memories(
    options: MemoryOptions,
    num_samples: int,
    seed: int,
    onto: str = "sphere",
    labels: Tensor | None = None,
) -> tuple[Memory, Memory]:
    """The teacher-side and the student-side memory (seeds ``seed`` and ``seed + 1``): two
    ``[N, d]`` banks holding ``labels``, or two ``[K, d]`` queues under ``negatives=queue``.
    """
    storage = STORAGE_DTYPES[options.bank_dtype]
    if options.negatives == "queue":
        size = negatives_per_step(options.num_negatives, num_samples)
        return tuple(
            NegativeQueue(size, options.embed_dim, seed=seed + i, onto=onto, dtype=storage)
            for i in range(2)
        )  # type: ignore[return-value]
    return (
        MemoryBank(
            num_samples,
            options.embed_dim,
            options.momentum,
            seed=seed,
            labels=labels,
            onto=onto,
            dtype=storage,
        ),
        MemoryBank(
            num_samples,
            options.embed_dim,
            options.momentum,
            seed=seed + 1,
            labels=labels,
            onto=onto,
            dtype=storage,
        ),
    )
