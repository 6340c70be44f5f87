"""In-memory paired dataset: aligned tensors of every modality, fetched a whole batch at a time.

Small datasets (the embedded ``scenes``, cached NYU features) fit in memory; fetching a batch
with one fancy-index per key is far faster than collating per-sample dicts.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ArrayDataset(Dataset):
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


def make_loader(dataset: ArrayDataset, batch_size: int, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset`` with a seeded shuffle (reproducible epochs)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       drop_last=drop_last, collate_fn=batch_collate,
                                       generator=generator)
