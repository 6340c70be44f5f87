"""Where contrastive methods (WCoRD's global term, CRD) keep their negatives.

The pair of memories (teacher side, student side) their :class:`MemoryOptions` build:
per-sample memory banks, or FIFO queues that do not grow with the dataset.
"""

from __future__ import annotations

from torch import Tensor

from xmodal.objectives.memory_bank import MemoryBank, negatives_per_step
from xmodal.objectives.memory_options import MemoryOptions
from xmodal.objectives.negative_queue import NegativeQueue

__all__ = ["Memory", "MemoryOptions", "build_memories"]

Memory = MemoryBank | NegativeQueue


def build_memories(
    options: MemoryOptions,
    num_samples: int,
    seed: int,
    onto: str = "sphere",
    labels: Tensor | None = None,
) -> tuple[Memory, Memory]:
    """The teacher-side and the student-side memory (seeds ``seed`` and ``seed + 1``).

    Two ``[N, d]`` banks holding ``labels``, or two ``[K, d]`` queues under ``negatives=queue``.
    """
    if options.negatives == "queue":
        size = negatives_per_step(options.num_negatives, num_samples)
        return (
            NegativeQueue(size, options, seed=seed, onto=onto),
            NegativeQueue(size, options, seed=seed + 1, onto=onto),
        )
    return (
        MemoryBank(num_samples, options, seed=seed, labels=labels, onto=onto),
        MemoryBank(num_samples, options, seed=seed + 1, labels=labels, onto=onto),
    )
