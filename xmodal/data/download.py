"""Resumable, verified HTTP downloads of dataset source files (``xmodal data download``).

The source files are large and their servers slow and flaky, so :func:`download` streams into
``DEST.part``, resumes it with HTTP ``Range`` requests, retries transient failures with
backoff, and moves it to ``DEST`` only once verified (size, SHA-256 if given), so ``DEST`` is
either absent or complete. Uses only ``urllib`` (standard library) and ``rich``.

Details: docs/data.md.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from xmodal import __version__
from xmodal.core.errors import DataError

__all__ = ["KNOWN_FILES", "RemoteFile", "download", "download_known"]

_HINT = "download it in a browser and pass --data PATH"
#: statuses worth retrying: the server is busy or briefly broken, not refusing the file
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteFile:
    """A dataset source file that ``xmodal data download NAME`` knows how to fetch.

    Attributes:
        name: the dataset name used on the command line.
        url: where the file is served.
        size: its size in bytes, or ``None`` when not known for certain.
        sha256: its SHA-256 hex digest, or ``None`` when not known for certain.
        filename: the file name to save it under.
        description: one line for humans.
    """

    name: str
    url: str
    size: int | None
    sha256: str | None
    filename: str
    description: str


#: Files ``download_known`` can fetch, by dataset name. Size and hash stay ``None`` unless
#: known for certain: a wrong value would reject every good download.
KNOWN_FILES: dict[str, RemoteFile] = {
    "nyu-depth": RemoteFile(
        name="nyu-depth",
        url="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
        size=None,  # ~2.8 GB; exact byte count not pinned here
        sha256=None,
        filename="nyu_depth_v2_labeled.mat",
        description="NYU-Depth V2 labeled set (1449 RGB-D frames with labels, MATLAB v7.3, "
        "~2.8 GB)",
    ),
}


class _Transient(Exception):
    """A failure worth retrying; ``received`` counts the bytes the attempt still saved."""

    def __init__(self, reason: str, received: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify it.

    Args:
        url: an ``http://`` or ``https://`` URL.
        dest: where the finished file goes; the transfer runs in ``dest`` + ``.part``.
        expected_size: the file's size in bytes, if known; checked before and after.
        sha256: the file's SHA-256 hex digest, if known; checked after.
        progress: draw a rich progress bar (bytes, speed, ETA) on stderr.
        timeout: seconds to wait for the connection or for each read.
        chunk_size: bytes per read/write.
        retries: how many times in a row an attempt may fail without receiving any data
            before giving up (an attempt that saved bytes resets the count).
        backoff: seconds before the first retry; doubles per consecutive failure (max 30 s).

    Returns:
        ``dest``. An existing ``dest`` is returned without a request when it matches
        ``expected_size`` and ``sha256`` -- or when neither is given, since this function only
        ever creates ``dest`` after verification.

    Raises:
        DataError: HTTP errors such as 404/403, retries exhausted (the ``.part`` is kept for
            the next run), or a size/hash mismatch (the corrupt ``.part`` is deleted).

    A ``KeyboardInterrupt`` propagates and leaves the ``.part`` file for the next resume.
    """
    dest = Path(dest)
    if not url.lower().startswith(("http://", "https://")):
        raise DataError(
            f"cannot download '{url}': only http:// and https:// URLs are supported; {_HINT}"
        )
    want_sha = sha256.lower() if sha256 else None
    if want_sha is not None and not _SHA256.fullmatch(want_sha):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if dest.is_dir():
        raise DataError(f"cannot download {url} to '{dest}': it is a folder; pass a file path")
    if dest.is_file() and _matches(dest, expected_size, want_sha):
        return dest
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create folder '{dest.parent}' for {url}: {exc}") from None
    if expected_size is not None and _size(part) > expected_size:
        part.unlink()  # longer than the file itself: cannot be a prefix of it

    with _Bar(progress, dest.name, completed=_size(part), total=expected_size) as bar:
        total = _fetch_with_retries(
            url,
            part,
            expected_size=expected_size,
            timeout=timeout,
            chunk_size=chunk_size,
            retries=retries,
            backoff=backoff,
            bar=bar,
        )
    _verify(part, dest, url, total=total, expected_size=expected_size, sha256=want_sha)
    os.replace(part, dest)  # atomic: dest never holds a partial or unverified file
    return dest


def download_known(name: str, to_dir: Path, **kw: Any) -> Path:
    """Download the :data:`KNOWN_FILES` entry ``name`` into the folder ``to_dir``.

    ``kw`` goes to :func:`download`; ``expected_size`` and ``sha256`` default to the entry's.
    """
    try:
        entry = KNOWN_FILES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(KNOWN_FILES), n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(
            f"no downloadable dataset named '{name}'; {guess}"
            f"known: {', '.join(sorted(KNOWN_FILES))}"
        ) from None
    kw.setdefault("expected_size", entry.size)
    kw.setdefault("sha256", entry.sha256)
    return download(entry.url, Path(to_dir) / entry.filename, **kw)


# --- transfer -------------------------------------------------------------------------------


def _fetch_with_retries(
    url: str,
    part: Path,
    *,
    expected_size: int | None,
    timeout: float,
    chunk_size: int,
    retries: int,
    backoff: float,
    bar: _Bar,
) -> int | None:
    """Run attempts until one completes; returns the file size the server announced."""
    failures = 0
    while True:
        try:
            return _fetch_once(
                url,
                part,
                expected_size=expected_size,
                timeout=timeout,
                chunk_size=chunk_size,
                bar=bar,
            )
        except _Transient as exc:
            # Only attempts that got nowhere use up the budget: a 2.8 GB file on a line that
            # drops every few minutes should still arrive.
            failures = 0 if exc.received else failures + 1
            if failures > retries:
                raise DataError(
                    f"could not download {url}: {exc.reason} ({failures} attempts in a row "
                    f"without data); the partial file '{part}' is kept, rerun to resume, or "
                    f"{_HINT}"
                ) from None
            time.sleep(min(backoff * 2 ** max(failures - 1, 0), _MAX_BACKOFF_S))


def _fetch_once(
    url: str, part: Path, *, expected_size: int | None, timeout: float, chunk_size: int, bar: _Bar
) -> int | None:
    """One HTTP attempt that appends to (or restarts) ``part``; returns the announced size.

    Raises :class:`_Transient` for anything a retry may fix, :class:`DataError` otherwise.
    """
    offset = _size(part)
    if expected_size is not None and offset == expected_size:
        return expected_size  # every byte is here already; verification has the last word
    headers = {
        "User-Agent": f"xmodal/{__version__}",
        "Accept-Encoding": "identity",
    }  # byte ranges and sizes refer to the raw file
    if offset:
        headers["Range"] = f"bytes={offset}-"
    received = 0
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as resp:
            length = _int_or_none(resp.headers.get("Content-Length"))
            if resp.status == 206:
                start, total = _parse_content_range(resp.headers.get("Content-Range"))
                if start != offset:
                    # A range we did not ask for cannot be spliced on: start over.
                    part.unlink(missing_ok=True)
                    bar.restart()
                    raise _Transient(f"server resumed at byte {start}, not {offset}")
                mode = "ab"
            else:
                # 200: the whole file, whether or not we asked for a range. Restart cleanly.
                total, mode = length, "wb"
                if offset:
                    bar.restart()
                offset = 0
            if total is not None and expected_size is not None and total != expected_size:
                raise DataError(
                    f"{url} is {total} bytes, but {expected_size} were expected: "
                    f"the file on the server differs from the known one; {_HINT}"
                )
            bar.set_total(total)
            with _open_part(part, mode) as f:
                while data := resp.read(chunk_size):
                    _write(f, data, part)
                    received += len(data)
                    bar.advance(len(data))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return _after_416(part, offset, exc.headers.get("Content-Range"), expected_size)
        if exc.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(
            f"could not download {url}: HTTP {exc.code} {exc.reason}; check the URL, or {_HINT}"
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, resets, timeouts
        raise _Transient(f"{type(exc).__name__}: {exc}", received) from exc
    # A clean EOF before the announced end is a cut connection too (http.client's read(n)
    # returns short data rather than raising).
    if length is not None and received < length:
        raise _Transient(f"connection closed after {received} of {length} bytes", received)
    target = total if total is not None else expected_size
    if target is not None and offset + received < target:
        raise _Transient(f"connection closed at byte {offset + received} of {target}", received)
    return total


def _after_416(
    part: Path, offset: int, content_range: str | None, expected_size: int | None
) -> int | None:
    """Handle "416 Range Not Satisfiable" on a resume: the part is complete, or not a prefix."""
    _, total = _parse_content_range(content_range)
    known = total if total is not None else expected_size
    if known is None or known == offset:
        # Nothing lies past our last byte, so the part is the whole file; with no size to
        # compare, the sha256 (if given) is the remaining check.
        return known
    part.unlink()  # ends beyond the real file: corrupt, do not resume it
    raise _Transient(f"server has {known} bytes, the partial file {offset}; starting over")


def _verify(
    part: Path,
    dest: Path,
    url: str,
    *,
    total: int | None,
    expected_size: int | None,
    sha256: str | None,
) -> None:
    """Check size and hash of the finished ``part``; delete it and raise on a mismatch."""
    size = _size(part)
    for want, source in ((expected_size, "expected"), (total, "announced by the server")):
        if want is not None and size != want:
            part.unlink(missing_ok=True)
            raise DataError(
                f"'{dest}' downloaded from {url} is {size} bytes, {want} "
                f"{source}; deleted the corrupt partial file, rerun to download "
                f"it again, or {_HINT}"
            )
    if sha256 is not None:
        got = _sha256_of(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise DataError(
                f"'{dest}' downloaded from {url} has sha256 {got}, expected "
                f"{sha256}; deleted the corrupt partial file, rerun to download "
                f"it again, or {_HINT}"
            )


# --- small helpers --------------------------------------------------------------------------


def _matches(path: Path, expected_size: int | None, sha256: str | None) -> bool:
    """Whether an existing file is the wanted one (size first: it is free)."""
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return sha256 is None or _sha256_of(path) == sha256


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``"bytes 10-99/100"`` -> ``(10, 100)``; ``"bytes */100"`` -> ``(None, 100)``."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None, None
    start, _, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _open_part(part: Path, mode: str) -> BinaryIO:
    try:
        return part.open(mode)  # type: ignore[return-value]
    except OSError as exc:  # a local problem: retrying the network will not fix it
        raise DataError(f"cannot write '{part}': {exc}") from None


def _write(f: BinaryIO, data: bytes, part: Path) -> None:
    try:
        f.write(data)
    except OSError as exc:  # disk full, quota: not a network error, so do not retry
        raise DataError(
            f"cannot write '{part}': {exc}; free some space and rerun to resume"
        ) from None


class _Bar:
    """A rich progress bar (bytes, speed, ETA) on stderr, or nothing when disabled."""

    def __init__(self, enabled: bool, label: str, *, completed: int, total: int | None) -> None:
        self._progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        # Start at the resumed offset so speed and ETA count only new bytes.
        self._task = self._progress.add_task(label, total=total, completed=completed)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def set_total(self, total: int | None) -> None:
        if self._progress is not None and total is not None:
            self._progress.update(self._task, total=total)

    def restart(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)
