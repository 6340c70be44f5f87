"""Open an HDF5 file read-only, turning every way that fails into one DataError.

Users hand xmodal files they downloaded or copied: the usual failures are a wrong path, a
MATLAB v5 ``.mat`` (not HDF5), some other format, or a download that stopped half-way. Each
gets a message naming the file and what to do, instead of h5py's OSError.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from xmodal.core.errors import DataError


def open_hdf5(path: Path, advice: str, label: str = "") -> h5py.File:
    """``h5py.File(path, "r")``, or DataError ``"{label}'{path}' <what is wrong>; {advice}"``."""
    where = f"{label}'{path}'"
    if not path.is_file():
        raise DataError(f"{where} does not exist; {advice}")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as handle:
            head = handle.read(128)
        kind = "a MATLAB v5 file" if head.startswith(b"MATLAB 5.0") else "not an HDF5 file"
        raise DataError(f"{where} is {kind}; {advice}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        truncated = "truncated" in str(exc)
        what = "truncated (incomplete download?)" if truncated else f"unreadable ({exc})"
        raise DataError(f"{where} is {what}; {advice}") from None
