"""A memory bank of L2-normalised embeddings, one row per training sample, updated with momentum.

Contrastive distillation needs many negatives (K = 16384 by default) but a batch holds few; the
bank keeps a slowly moving embedding of every training sample so negatives can be read from it
without running the encoders on them. Rows are read without gradient and updated after the
optimiser step as ``m[i] <- normalise(mu * m[i] + (1 - mu) * new_i)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MemoryBank"]


class MemoryBank(nn.Module):
    """``size`` unit vectors of dimension ``dim`` (buffer ``memory`` ``[size, dim]``, float32).

    The buffer is part of the ``state_dict`` so checkpoints restore the bank. Under several
    processes call :meth:`update` with indices and embeddings gathered from all of them, so
    every replica holds the same bank.

    Args:
        size: number of rows ``N`` (number of training samples), >= 2.
        dim: embedding dimension ``d``, >= 1.
        momentum: ``mu`` in [0, 1]: weight of the old row in the update (0 = overwrite,
            1 = frozen). CRD's default 0.5.
        seed: seeds the random unit-vector initialisation and the bank's own sampling generator.
    """

    memory: Tensor

    def __init__(self, size: int, dim: int, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(size, int) and size >= 2):
            raise ValueError(f"MemoryBank: size must be an int >= 2, got {size!r}")
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"MemoryBank: dim must be an int >= 1, got {dim!r}")
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"MemoryBank: momentum must be in [0, 1], got {momentum!r}")
        if not isinstance(seed, int):
            raise ValueError(f"MemoryBank: seed must be an int, got {seed!r}")
        self.size = size
        self.dim = dim
        self.momentum = float(momentum)
        self._generator = torch.Generator().manual_seed(seed)
        # Isotropic Gaussian rows, normalised: uniform on the unit sphere, so an untrained bank
        # gives negatives with no preferred direction.
        init = torch.randn(size, dim, generator=self._generator)
        self.register_buffer("memory", F.normalize(init, dim=1))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, momentum={self.momentum}"

    def sample_negatives(
        self, num: int, exclude: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``num`` distinct row indices uniformly among the rows not in ``exclude``.

        Sampling is without replacement, so no row is counted twice in one contrastive
        denominator. The caller caps ``num`` (``K <= size - 1``, and ``<= size - #distinct(exclude)``).

        Args:
            num: number of negatives ``K`` (>= 0).
            exclude: row indices ``[B]`` (any shape, long) never returned, e.g. the batch's own
                positives; duplicates allowed.
            generator: random generator; the bank's own seeded CPU generator when None. Sampling
                runs on the generator's device.

        Returns:
            ``[num]`` long indices on the bank's device, all distinct and outside ``exclude``.
        """
        if not (isinstance(num, int) and num >= 0):
            raise ValueError(f"MemoryBank.sample_negatives: num must be an int >= 0, got {num!r}")
        gen = self._generator if generator is None else generator
        device = gen.device
        if exclude is None or exclude.numel() == 0:
            excluded = torch.empty(0, dtype=torch.long, device=device)
        else:
            excluded = torch.unique(exclude.detach().reshape(-1).to(device=device, dtype=torch.long))
            if int(excluded[0]) < 0 or int(excluded[-1]) >= self.size:
                raise ValueError(
                    f"MemoryBank.sample_negatives: exclude holds indices outside [0, {self.size})"
                )
        allowed = self.size - excluded.numel()
        if num > allowed:
            raise ValueError(
                f"MemoryBank.sample_negatives: num={num} exceeds the {allowed} rows left after "
                f"excluding {excluded.numel()} of {self.size}"
            )
        # Draw ranks among the allowed rows, then map rank r to the r-th allowed row:
        # row = r + #{excluded e_j whose rank e_j - j is <= r} (excluded is sorted and unique).
        ranks = torch.randperm(allowed, generator=gen, device=device)[:num]
        shifted = excluded - torch.arange(excluded.numel(), device=device)
        rows = ranks + torch.searchsorted(shifted, ranks, right=True)
        return rows.to(self.memory.device)

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor) -> None:
        """Momentum update ``m[i] <- normalise(mu * m[i] + (1 - mu) * e_i)`` (no gradient).

        Duplicate indices in one call are **averaged**: the rows of ``embeddings`` sharing an
        index are averaged into one ``e_i``, which is then applied once. The result therefore
        does not depend on the order of the gathered batch (identical on every replica, also
        when a distributed sampler pads with repeated samples).

        Args:
            indices: ``[B]`` long row indices in ``[0, size)``.
            embeddings: ``[B, dim]`` new embeddings (normally already unit norm; any float dtype).
        """
        if indices.dim() != 1 or embeddings.dim() != 2 or embeddings.shape != (indices.shape[0], self.dim):
            raise ValueError(
                f"MemoryBank.update: expected indices [B] and embeddings [B, {self.dim}], got "
                f"{tuple(indices.shape)} and {tuple(embeddings.shape)}"
            )
        if indices.numel() == 0:
            return
        idx = indices.to(device=self.memory.device, dtype=torch.long)
        if int(idx.min()) < 0 or int(idx.max()) >= self.size:
            raise ValueError(f"MemoryBank.update: indices outside [0, {self.size})")
        new = embeddings.detach().to(device=self.memory.device, dtype=self.memory.dtype)
        rows, inverse = torch.unique(idx, return_inverse=True)
        summed = torch.zeros(rows.numel(), self.dim, dtype=new.dtype, device=new.device)
        summed.index_add_(0, inverse, new)
        counts = torch.bincount(inverse, minlength=rows.numel()).to(new.dtype).unsqueeze(1)
        mixed = self.momentum * self.memory[rows] + (1.0 - self.momentum) * (summed / counts)
        self.memory[rows] = F.normalize(mixed, dim=1)
