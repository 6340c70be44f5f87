"""One split of an HDF5 cache, read a batch at a time: the data never has to fit in memory.

Every dataset's cache (``scenes``, ``nyu-depth``, ``paired``, ``cifar100``) is an HDF5 file; a
split is a set of its rows. A :class:`HDF5Split` reads only the rows a batch asks for, so a run's
peak memory does not grow with the dataset, and DataLoader workers (``data.num_workers``) read in
parallel, each with its own file handle.

A column whose rows in the split take at most :data:`IN_MEMORY_BYTES` is read once, on first
use, and then served from memory: h5py reads a list of rows at about 10 ms a batch, which was a
quarter of the default run's CPU time, while the default data is a few MB. Larger columns stream.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from xmodal.core.errors import DataError

__all__ = ["IN_MEMORY_BYTES", "HDF5Split", "Transform", "as_long"]

#: bytes of one column's split rows up to which the column is read once and kept in memory (per
#: process: each DataLoader worker keeps its own copy)
IN_MEMORY_BYTES = 256 * 2**20

Transform = Callable[[Tensor, np.ndarray], Tensor]
"""Applied to a column's rows after reading: ``(values [n, ...], file rows [n]) -> tensor``.
Module-level functions (or callable objects) keep a split picklable for spawned workers."""


def as_long(values: Tensor, rows: np.ndarray) -> Tensor:
    """Labels as int64, whatever integer type the cache stores them in."""
    return values.long()


class _Composed:
    """``outer(inner(values))``, picklable."""

    def __init__(self, outer: Transform, inner: Transform) -> None:
        self.outer, self.inner = outer, inner

    def __call__(self, values: Tensor, rows: np.ndarray) -> Tensor:
        return self.outer(self.inner(values, rows), rows)


class HDF5Split(Dataset[dict[str, Tensor]]):
    """Rows ``rows`` of the HDF5 datasets ``columns`` (``{key: dataset path}``) of ``path``.

    Item access matches :class:`~xmodal.data.arrays.ArrayDataset`: ``__getitems__(indices)``
    gives ``{key: [n, ...]}`` plus ``"index"``; :meth:`read` gives one column's rows and
    :meth:`column` a whole (small) column such as labels.

    Args:
        path: the HDF5 file.
        columns: key -> dataset path in the file; several keys may read one dataset.
        rows: file row of each sample of the split (default: every row, in order).
        transforms: key -> :data:`Transform` (dtype changes, label maps, derived views).
    """

    def __init__(
        self,
        path: str | Path,
        columns: dict[str, str],
        rows: Sequence[int] | np.ndarray | None = None,
        transforms: dict[str, Transform] | None = None,
    ) -> None:
        self.path = Path(path)
        self.columns = dict(columns)
        self.transforms = dict(transforms or {})
        try:
            with h5py.File(self.path, "r") as f:
                lengths = {key: f[name].shape[0] for key, name in self.columns.items()}
        except (OSError, KeyError) as exc:
            raise DataError(
                f"cache '{self.path}' is unreadable or incomplete ({exc}); delete it and "
                "rerun preprocessing"
            ) from None
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"cache '{self.path}': columns of different lengths {lengths}; delete it "
                "and rerun preprocessing"
            )
        total = next(iter(lengths.values()), 0)
        self.rows = (
            np.arange(total, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        )
        self._file: h5py.File | None = None
        self._pid = -1
        # dataset path -> the split's rows in memory (None: too large, streamed); shared by
        # the columns that read one dataset and by the views of :meth:`select`
        self._memory: dict[str, np.ndarray | None] = {}
        self._unique_rows, self._position = np.unique(self.rows, return_inverse=True)

    def __len__(self) -> int:
        return len(self.rows)

    def keys(self) -> list[str]:
        """The column names."""
        return list(self.columns)

    def __contains__(self, key: object) -> bool:
        return key in self.columns

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # one handle per (worker) process
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _in_memory(self, name: str) -> np.ndarray | None:
        """The split's rows of dataset ``name`` (in :attr:`_unique_rows` order), or None."""
        if self._pid != os.getpid():  # a forked worker starts its own copy
            self._memory = {}
        if name not in self._memory:
            dataset = self._handle()[name]
            row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
            rows = self._unique_rows
            if len(rows) == 0 or row_bytes * len(rows) > IN_MEMORY_BYTES:
                self._memory[name] = None
            elif rows[-1] - rows[0] + 1 == len(rows):  # contiguous: one slice read
                self._memory[name] = dataset[int(rows[0]) : int(rows[-1]) + 1]
            else:
                self._memory[name] = dataset[rows.tolist()]
        return self._memory[name]

    def read(self, key: str, indices: Sequence[int] | np.ndarray | slice) -> Tensor:
        """Column ``key`` at the split's ``indices`` (a slice or a list; repeats allowed)."""
        file_rows = self.rows[indices]
        kept = self._in_memory(self.columns[key])
        if kept is not None:
            values = kept[self._position[indices]]
            tensor = torch.from_numpy(np.ascontiguousarray(values))
            transform = self.transforms.get(key)
            return tensor if transform is None else transform(tensor, file_rows)
        unique, inverse = np.unique(file_rows, return_inverse=True)
        dataset = self._handle()[self.columns[key]]
        if len(unique) == 0:
            values = dataset[0:0]
        elif unique[-1] - unique[0] + 1 == len(unique):  # a contiguous run: one slice read
            values = dataset[int(unique[0]) : int(unique[-1]) + 1]
        else:  # h5py reads a list of increasing rows
            values = dataset[unique.tolist()]
        tensor = torch.from_numpy(np.ascontiguousarray(values[inverse]))
        transform = self.transforms.get(key)
        return tensor if transform is None else transform(tensor, file_rows)

    def column(self, key: str) -> Tensor:
        """The whole column (for labels and other small per-sample data)."""
        return self.read(key, slice(None))

    def select(self, keys: Sequence[str]) -> HDF5Split:
        """A view with only the columns ``keys`` (and ``"index"``).

        A loader over it reads, and derives, nothing else; rows kept in memory are shared.
        """
        missing = [k for k in keys if k not in self.columns]
        if missing:
            raise KeyError(f"cache '{self.path}' has no column {missing}; it has {self.keys()}")
        view = copy.copy(self)
        view.columns = {k: self.columns[k] for k in keys}
        view.transforms = {k: t for k, t in self.transforms.items() if k in keys}
        return view

    def derive(self, key: str, source: str, transform: Transform) -> None:
        """Add column ``key``, computed from column ``source`` whenever it is read.

        A view such as points from depth, kept out of the cache.
        """
        base = self.transforms.get(source)
        self.columns[key] = self.columns[source]
        self.transforms[key] = transform if base is None else _Composed(transform, base)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        batch = {key: self.read(key, indices) for key in self.columns}
        batch["index"] = torch.as_tensor(indices, dtype=torch.long)
        return batch

    def __getstate__(self) -> dict[str, Any]:  # workers open their own handle and memory
        return {**self.__dict__, "_file": None, "_pid": -1, "_memory": {}}
