"""Give freed heap memory back to the operating system between the steps of a long loop.

glibc's ``malloc`` serves allocations below its (self-raising, up to 32 MB) mmap threshold from
one heap. A loop that reads a batch or a frame (numpy, through h5py or scipy), runs a model and
keeps a result leaves the freed buffers as holes that the next step's requests only partly
reuse, so the resident memory grows with every step, i.e. with the dataset: about 9 MB per NYU
frame (1.65 GB after 100 frames, nothing leaked), and likewise per extraction batch
(``bench_streaming.py --run``; figures in ``benchmarks/README.md``). ``malloc_trim(0)`` returns
every free page of the heap, holes included, in well under a millisecond, so such loops call
:func:`release_free_heap` after each step. Elsewhere (macOS, musl) it is absent and nothing is
done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Any

__all__ = ["release_free_heap"]


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``).

    Returns:
        False where there is no such call (nothing to do there), else True.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
