"""Give freed heap memory back to the operating system between large, varying allocations.

glibc raises its mmap threshold after large blocks are freed, so later frames' arrays land on
the heap, and fragmentation there keeps the resident size growing frame after frame (about
9 MB per NYU frame: 1.65 GB after 100 frames with nothing leaked). ``malloc_trim(0)`` returns
the free pages; it costs well under a millisecond. Elsewhere (macOS, musl) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return freed heap pages to the OS where the C library allows it; True if it did."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
