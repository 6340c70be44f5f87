"""How memory banks and queues store embeddings: the dtypes offered and their random start rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: storage dtypes by config name; 16 bits halve a bank, reads are cast to the caller's dtype
STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_CHUNK_ROWS = 8192  # a multiple of 16: chunked normal_ draws the same stream as one call


def random_unit_rows(
    size: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``[size, dim]`` isotropic Gaussian rows normalised onto the unit sphere, in ``dtype``.

    Drawn in chunks, so a 16-bit bank never holds a float32 copy of itself (at N = 10^6,
    d = 128 that copy is 0.5 GB); the values equal ``normalize(randn(size, dim))``.
    """
    rows = torch.empty(size, dim, dtype=dtype)
    for start in range(0, size, _CHUNK_ROWS):
        chunk = torch.empty(min(_CHUNK_ROWS, size - start), dim).normal_(generator=generator)
        rows[start : start + chunk.shape[0]] = F.normalize(chunk, dim=1)
    return rows
