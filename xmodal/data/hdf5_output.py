"""Writing an HDF5 file without a crash or a traceback on a full disk.

HDF5 may crash (a segfault, exit 139) when the disk fills while it writes, so the free space is
checked first against :func:`hdf5_bytes`: the arrays plus a margin for what HDF5 adds (chunk
indexes, metadata, allocation in whole chunks). What still goes wrong while writing (h5py's
``OSError`` or ``RuntimeError``) becomes one :class:`~xmodal.core.errors.OutputError` line naming
the file and the space it needs (:func:`hdf5_writing`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xmodal.core.cache import NO_SPACE, free_bytes, megabytes, no_space_message
from xmodal.core.errors import OutputError

MARGIN = 0.10  # of the arrays' bytes
METADATA_BYTES = 4 << 20


def hdf5_bytes(array_bytes: int) -> int:
    """The free space to ask for before writing ``array_bytes`` of arrays into an HDF5 file."""
    return int(array_bytes * (1 + MARGIN)) + METADATA_BYTES


@contextmanager
def hdf5_writing(path: str | Path, needed: int) -> Iterator[None]:
    """Turn an HDF5 write error in the block into :class:`OutputError` naming ``path``.

    The message names the ``needed`` bytes too. The caller removes (or keeps, when resumable)
    what was written.
    """
    path = Path(path)
    try:
        yield
    except (OSError, RuntimeError) as exc:
        no_space = getattr(exc, "errno", None) in NO_SPACE or "no space" in str(exc).lower()
        if not (no_space or _from_h5py(exc)):
            raise  # not about writing the file: a bug, keeps its traceback
        free = free_bytes(path)
        if no_space or free < needed:
            raise OutputError(no_space_message(path, needed, free)) from None
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(
            f"cannot write '{path}' (HDF5: {text}; needs about {megabytes(needed)}, "
            f"{megabytes(free)} free there): check that place, free some space "
            "or pass another --out, then run the same command again"
        ) from None


def _from_h5py(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside h5py."""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if f"{os.sep}h5py{os.sep}" in name or name.startswith("h5py"):
            return True
        tb = tb.tb_next
    return False
