"""The one way xmodal writes a file: into a temporary name unique to this process, published
with ``os.replace`` only when complete, removed on any failure.

A crash, a full disk or a second process therefore never leaves half a file where a finished
one is expected. A full disk, a read-only place or a file standing where a folder must be is
one :class:`~xmodal.core.errors.OutputError` line naming the path (and the space needed).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xmodal.core.errors import OutputError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST}


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(path: Path, needed: int) -> None:
    """Raise :class:`OutputError` before writing when ``path``'s filesystem has under
    ``needed`` bytes free (a writer that runs out half-way, like HDF5, may even crash).
    """
    free = free_bytes(path)
    if needed > free:
        raise OutputError(no_space_message(path, needed, free))


def output_error(exc: OSError, path: Path, needed: int | None = None) -> OutputError | OSError:
    """The one-line :class:`OutputError` for an ``OSError`` met while writing ``path``; other
    errors (not about the output) are returned unchanged.
    """
    if exc.errno in NO_SPACE:
        return OutputError(no_space_message(path, needed, free_bytes(path)))
    if exc.errno in _NOT_WRITABLE:
        return OutputError(
            f"cannot write '{path}' ({exc.strerror}): make that place writable "
            "or pass another --out"
        )
    if exc.errno in _NOT_A_FOLDER:
        return OutputError(_not_a_folder(path))
    return exc


def make_directory(path: Path) -> Path:
    """``mkdir -p path`` with one clear line when that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path) from None
    if not path.is_dir():
        raise OutputError(_not_a_folder(path))
    return path


def temp_path(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process and call (it matches
    :data:`TEMP_NAME`, whose ``pid`` group is this process's id).
    """
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")


#: Names of temporary files and folders: :func:`temp_path`'s ``.NAME.tmpPID-HEX8`` and the
#: export writer's ``.NAME.tmpPID``.
TEMP_NAME = re.compile(r"^\..+\.tmp(?P<pid>[1-9][0-9]*)(?:-[0-9a-f]{8})?$")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temporary files and folders (:data:`TEMP_NAME`) under ``directory`` whose
    writer is no longer alive on this host (killed with ``kill -9``, say); returns them.

    Only the holder of the directory's :class:`~xmodal.core.lock.RunLock` may call this, when
    it takes the lock: no other job writes there then. A temp of a live process stays.
    """
    removed = []
    for folder, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            match = TEMP_NAME.match(name)
            if match is None or _alive(int(match["pid"])):
                continue
            stale = Path(folder) / name
            try:
                if name in dirs:
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
            except FileNotFoundError:
                continue
            except OSError:  # not ours to remove (permissions): leave it
                continue
            removed.append(stale)
        dirs[:] = [d for d in dirs if TEMP_NAME.match(d) is None]  # never walk into a temp folder
    return removed


@contextmanager
def atomic_output(path: str | Path, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path``.

    Args:
        needed: bytes the file will take, checked against the free space before writing.

    Raises:
        OutputError: disk full (with the space needed), read-only, or not a folder.
    """
    path = Path(path)
    make_directory(path.parent)
    if needed is not None:
        check_space(path, needed)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise output_error(exc, path, needed) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    data = text.encode("utf-8")
    with atomic_output(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _not_a_folder(path: Path) -> str:
    return (
        f"cannot create '{path}': it or one of its parents is a file, not a folder; "
        "pass another --out"
    )


def no_space_message(path: Path, needed: int | None, free: int) -> str:
    need = f"needs about {megabytes(needed)}, " if needed is not None else ""
    return (
        f"no space left to write '{path}' ({need}{megabytes(free)} free there): free some "
        "space or pass another --out, then run the same command again"
    )
