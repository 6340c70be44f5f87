"""Paired data in memory, the access every split offers, and the loader over any split.

:class:`ArrayDataset` holds aligned tensors of every modality, fetched a whole batch at a time;
:class:`SplitData` is what every split offers (in memory here, streamed from a cache by
:class:`~xmodal.data.hdf5_split.HDF5Split`); :func:`make_loader` iterates either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class SplitData(Protocol):
    """What stages read from a split, in memory or streamed.

    Its length, batches of rows, one column's rows, and whole small columns (labels).
    """

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...

    def keys(self) -> list[str]:
        """The column names."""
        ...

    def read(self, key: str, indices: Sequence[int] | np.ndarray | slice) -> Tensor:
        """Column ``key`` at ``indices`` (rows of the split)."""
        ...

    def column(self, key: str) -> Tensor:
        """Column ``key`` whole, ``[N, ...]`` (small columns: labels)."""
        ...

    def select(self, keys: Sequence[str]) -> SplitData:
        """A view with only the columns ``keys`` (what a loader then reads)."""
        ...

    def derive(
        self, key: str, source: str, transform: Callable[[Tensor, np.ndarray], Tensor]
    ) -> None:
        """Add column ``key``: ``transform(rows of source, their row indices)``."""
        ...

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]: ...


class Rows:
    """Column ``key`` of ``data`` restricted to ``rows``, read only when sliced.

    It is sliced like a tensor (``len``, ``[a:b]``): a streamed split's inputs, for extraction
    loops.
    """

    def __init__(self, data: SplitData, key: str, rows: slice = slice(None)) -> None:
        self.data, self.key = data, key
        self.start, self.stop, _ = rows.indices(len(data))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, part: slice) -> Tensor:
        start, stop, _ = part.indices(len(self))
        return self.data.read(self.key, slice(self.start + start, self.start + stop))


class ArrayDataset(Dataset[dict[str, Tensor]]):
    """Aligned tensors ``{key: [N, ...]}``; item ``i`` is ``{key: t[i]}`` plus ``"index": i``.

    Use with :func:`batch_collate` (or :func:`make_loader`) so that the DataLoader fetches a
    whole batch through ``__getitems__``.
    """

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        sizes = {k: len(v) for k, v in tensors.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"ArrayDataset needs tensors of one common length, got {sizes}")
        self.tensors = tensors
        self.size = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self.size

    def keys(self) -> list[str]:
        """The column names."""
        return list(self.tensors)

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    def read(self, key: str, indices: Sequence[int] | np.ndarray | slice) -> Tensor:
        """Column ``key`` at ``indices``."""
        if isinstance(indices, slice):
            return self.tensors[key][indices]
        return self.tensors[key][torch.as_tensor(np.asarray(indices), dtype=torch.long)]

    def column(self, key: str) -> Tensor:
        """Column ``key`` whole, ``[N, ...]``."""
        return self.tensors[key]

    def select(self, keys: Sequence[str]) -> ArrayDataset:
        """A view with only the columns ``keys`` (the tensors are shared, not copied)."""
        return ArrayDataset({k: self.tensors[k] for k in keys})

    def derive(
        self, key: str, source: str, transform: Callable[[Tensor, np.ndarray], Tensor]
    ) -> None:
        """Add column ``key`` computed from column ``source`` (here at once, in memory)."""
        self.tensors[key] = transform(self.tensors[source], np.arange(self.size))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = {k: v[idx] for k, v in self.tensors.items()}
        batch["index"] = idx
        return batch


def batch_collate(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Collate for :class:`ArrayDataset`: the batch is already assembled by ``__getitems__``."""
    return batch


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader over ``dataset`` (any :class:`SplitData`) with a seeded shuffle.

    Epochs are reproducible, and ``num_workers`` read batches in parallel; the order does not
    depend on the number of workers.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=batch_collate,  # type: ignore[arg-type]  # given whole batches, not lists
        generator=generator,
        num_workers=num_workers,
    )
    # not persistent: each epoch's iterator draws its worker seed from ``generator``, as the
    # single-process one does, so every epoch's order is the same with or without workers
