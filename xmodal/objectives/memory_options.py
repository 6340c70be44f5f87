"""The options of the memory of negatives (banks or queues) and of the contrast that reads it.

Shared by the contrastive methods (WCoRD's global term, CRD: their options dataclasses are
:class:`MemoryOptions`) and taken as they are by the memories they build
(:class:`~xmodal.objectives.memory_bank.MemoryBank`,
:class:`~xmodal.objectives.negative_queue.NegativeQueue`), so each range is checked here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xmodal.core.checks import Rule, at_least, holds, literal_rules, positive, require, within

__all__ = ["MemoryOptions"]


@dataclass
class MemoryOptions:
    """Where contrastive methods keep their negatives, and the temperature of their scores.

    Attributes:
        embed_dim: size ``d`` of the shared embedding space (>= 1).
        num_negatives: ``K``, negatives per step (>= 1; capped at ``N - 1``; the queue's length).
        tau: temperature of the scores ``<u, v> / tau`` (> 0).
        momentum: memory-bank momentum ``mu`` in [0, 1): the weight of a row's old value in
            its update (0 overwrites it; 1 would freeze the random start rows, so it is refused).
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

    def __post_init__(self) -> None:
        require(self, {**self.memory_rules(), **literal_rules(self)})
        require(self, self.memory_relations())

    def memory_rules(self) -> dict[str, Rule]:
        """The range of each of these fields (Literals aside), for a subclass's ``require``."""
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
