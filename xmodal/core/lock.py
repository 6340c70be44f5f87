"""One writer per run directory: a lock file that holds the directory for one job.

The lock is an advisory ``flock`` on ``<run dir>/.lock``, so the operating system releases it
when the holder exits, even on ``kill -9``: a crashed run never blocks the next one. The file
names the holder (pid, host, start time) for the message a second job gets. Taking the lock
removes the temporary files that dead writers left in the directory
(:func:`~xmodal.core.cache.remove_stale_temps`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from xmodal.core.cache import make_directory, output_error, remove_stale_temps
from xmodal.core.errors import OutputError

LOCK_NAME = ".lock"


class RunDirectoryBusy(OutputError):
    """Another job holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` creates ``run_dir`` and holds it.

    Raises :class:`RunDirectoryBusy` naming the job that holds it already.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None
        self.removed: list[Path] = []  # stale temporary files removed when the lock was taken

    def __enter__(self) -> RunLock:
        make_directory(self.directory)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirectoryBusy(
                f"run directory '{self.directory}' is in use by {holder}; wait "
                "for that run to finish or pass another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
            ).encode(),
        )
        self._fd = fd
        self.removed = remove_stale_temps(self.directory)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # nobody holds it any more
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int, patience: float = 2.0) -> str:
    """The holder's name, from the lock file.

    The holder writes it just after taking the lock, so a job that lost the race by
    microseconds waits up to ``patience`` seconds for it.
    """
    deadline = time.monotonic() + patience
    while True:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = _describe(os.read(fd, 4096))
        if holder != UNNAMED or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


UNNAMED = "another process"


def _describe(raw: bytes) -> str:
    try:
        holder = json.loads(raw.decode())
        return f"pid {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (ValueError, KeyError, TypeError):  # the holder has not written its name yet
        return UNNAMED
