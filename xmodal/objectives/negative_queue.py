"""A FIFO queue of the last K embeddings (MoCo's): a memory of negatives of a fixed size.

It does not grow with the dataset.

A :class:`~xmodal.objectives.memory_bank.MemoryBank` keeps one row per training sample, ``N x d``
per modality, which outgrows a GPU at audio-corpus or ImageNet scale. The queue keeps only the
``K`` most recent embeddings, gathered from every process, together with the dataset index each
came from, so that an anchor's own older embedding can be left out of its negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xmodal.objectives.critic import PROJECTIONS
from xmodal.objectives.embedding_storage import STORAGE_DTYPES, random_unit_rows
from xmodal.objectives.memory_options import MemoryOptions

__all__ = ["NegativeQueue"]


class NegativeQueue(nn.Module):
    """The ``size`` most recent embeddings and the dataset index each came from.

    Buffers ``memory`` ``[size, d]`` (``d = options.embed_dim``) and ``ids`` ``[size]`` (-1
    for the random start rows). It starts full of random unit vectors (MoCo does the same), so
    ``K`` negatives exist from the first step. All three buffers are in the ``state_dict``, so
    a resumed run continues the same queue. Under several processes, :meth:`enqueue` takes
    indices and embeddings gathered from all of them, so every replica holds the same queue.

    Args:
        size: ``K``, the number of embeddings kept (>= 1).
        options: :class:`~xmodal.objectives.memory_options.MemoryOptions`; the queue reads
            ``embed_dim`` and ``bank_dtype`` (16 bits halve it).
        seed: seeds the random start rows.
        onto: ``"sphere"`` or ``"ball"``; start rows lie on the sphere either way (entries come
            from the heads, already projected).
    """

    memory: Tensor
    ids: Tensor
    position: Tensor

    def __init__(
        self,
        size: int,
        options: MemoryOptions,
        seed: int = 0,
        onto: str = "sphere",
    ) -> None:
        super().__init__()
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"NegativeQueue: size must be an int >= 1, got {size!r}")
        if onto not in PROJECTIONS:
            raise ValueError(f"NegativeQueue: onto must be one of {PROJECTIONS}, got {onto!r}")
        self.options = options
        self.size, self.onto = size, onto
        start_rows = random_unit_rows(
            size,
            options.embed_dim,
            torch.Generator().manual_seed(seed),
            STORAGE_DTYPES[options.bank_dtype],
        )
        self.register_buffer("memory", start_rows)
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))  # next slot to write

    def extra_repr(self) -> str:
        """Size, dimension and storage dtype."""
        return f"size={self.size}, dim={self.options.embed_dim}, dtype={self.memory.dtype}"

    def own_rows(self, indices: Tensor) -> Tensor:
        """``[B, K]`` bool: entry ``k`` holds an older embedding of anchor ``b``'s own sample."""
        return self.ids.unsqueeze(0) == indices.to(self.ids.device, torch.long).unsqueeze(1)

    def record(self, indices: Tensor, embeddings: Tensor) -> None:
        """What every memory of negatives does with a gathered batch (here :meth:`enqueue`)."""
        self.enqueue(indices, embeddings)

    @torch.no_grad()
    def enqueue(self, indices: Tensor, embeddings: Tensor) -> None:
        """Write a (gathered) batch over the oldest entries, in order.

        Of a batch larger than the queue only its last ``size`` rows stay.

        Args:
            indices: ``[B]`` long dataset indices.
            embeddings: ``[B, dim]`` embeddings (any float dtype).
        """
        dim = self.options.embed_dim
        if indices.dim() != 1 or embeddings.shape != (indices.shape[0], dim):
            raise ValueError(
                f"NegativeQueue.enqueue: expected indices [B] and embeddings [B, {dim}], "
                f"got {tuple(indices.shape)} and {tuple(embeddings.shape)}"
            )
        if not torch.isfinite(embeddings).all():
            raise ValueError("NegativeQueue.enqueue: embeddings hold NaN or inf")
        total = indices.shape[0]
        kept = min(total, self.size)  # as if all were written in turn: the first ones overwritten
        start = self.position + (total - kept)
        slots = (start + torch.arange(kept, device=self.ids.device)) % self.size
        self.memory[slots] = (
            embeddings[total - kept :].detach().to(self.memory.device, self.memory.dtype)
        )
        self.ids[slots] = indices[total - kept :].to(self.ids.device, torch.long)
        self.position.fill_(int((self.position + total) % self.size))
