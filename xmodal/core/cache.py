"""The cache: how xmodal writes a file, and when it trusts a file it finds.

Guarantees:

- **Atomic writes.** Every file is written to a hidden name unique to the writing process
  (``.NAME.tmpPID-HEX8``) and published with ``os.replace`` only when complete; on any failure
  the temporary file is removed. A crash, a full disk or a second process never leaves half a
  file under a finished name. Free space is checked before large writes; a full disk, a
  read-only place or a file where a folder must be is one :class:`OutputError` line naming
  the path (and the space needed).
- **Content digests.** :func:`file_digest` hashes a file's bytes; :func:`value_digest` hashes
  a value's tensors (dtype, shape, bytes) and plain data, however the file stores them.
- **Keyed entries** (:func:`save_keyed`, :func:`read_keyed`): one tensor file holding a value,
  the ``key`` of everything it was computed from, and the value's content digest. A read gives
  the value only when the key matches and the value still has that digest; otherwise it gives
  the reason (missing, unreadable, other inputs, older layout, changed) and the caller
  recomputes. Tensor files are read with ``weights_only=True``: tensors and plain containers,
  never code.
- **Units** (:class:`Unit`): a folder whose ``done.json`` records the fingerprint of the
  unit's inputs and the content digest of every file it vouches for. It is reused only when
  the inputs' fingerprint matches, ``done.json`` is well formed and every file it vouches for
  still has its digest; otherwise the unit is recomputed (a changed setting silently; a
  damaged or missing file, or a change the unit's ``explain`` names, with one line saying
  why). Paths in it are relative to the unit's folder, so a copied or moved run directory
  reads its own files.

torch is imported only by the functions that read or write tensors, so that the command line's
light paths (the run lock, ``--version``) do not load it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from xmodal.core.config import fingerprint
from xmodal.core.errors import DataError, OutputError

# --- atomic writes ------------------------------------------------------------------------

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST}


def megabytes(size: int) -> str:
    """``size`` bytes as text in MB (one decimal)."""
    return f"{size / 1e6:.1f} MB"


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(path: Path, needed: int) -> None:
    """Raise :class:`OutputError` when ``path``'s filesystem has under ``needed`` bytes free.

    Checked before writing: a writer that runs out half-way (like HDF5) may even crash.
    """
    free = free_bytes(path)
    if needed > free:
        raise OutputError(no_space_message(path, needed, free))


def output_error(exc: OSError, path: Path, needed: int | None = None) -> OutputError | OSError:
    """The one-line :class:`OutputError` for an ``OSError`` met while writing ``path``.

    Other errors (not about the output) are returned unchanged.
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
    """A hidden name beside ``path``, unique to this process and call.

    It matches :data:`TEMP_NAME`, whose ``pid`` group is this process's id.
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
    """Delete the temporary files and folders under ``directory`` whose writer is gone.

    A temporary (:data:`TEMP_NAME`) whose process is no longer alive on this host (killed with
    ``kill -9``, say) is removed; a temp of a live process stays. Only the holder of the
    directory's :class:`~xmodal.core.lock.RunLock` may call this, when it takes the lock: no
    other job writes there then.

    Returns:
        The paths removed.
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
        path: the finished file's name.
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
    """The one line for a full disk at ``path``: the space needed (if known) and free."""
    need = f"needs about {megabytes(needed)}, " if needed is not None else ""
    return (
        f"no space left to write '{path}' ({need}{megabytes(free)} free there): free some "
        "space or pass another --out, then run the same command again"
    )


# --- tensor files -------------------------------------------------------------------------


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_output` (free space checked first)."""
    import torch

    with atomic_output(path, needed=payload_bytes(obj)) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def payload_bytes(obj: Any) -> int:
    """About what ``torch.save`` writes for ``obj``.

    Bytes of every tensor in ``obj`` (nested dicts, lists, tuples), plus 64 KiB per dict for
    the rest.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values()) + (1 << 16)
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def load_checkpoint(path: str | Path) -> Any:
    """The tensors and plain containers saved at ``path`` (``weights_only``: never code).

    Raises:
        DataError: the file is missing or unreadable (torn, or holds more than tensors),
            naming it and the fix.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist; rerun the stage that writes it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"checkpoint '{path}' is unreadable ({exc.__class__.__name__}); delete it "
            "and rerun the run to recompute it"
        ) from None


# --- content digests ----------------------------------------------------------------------


def file_digest(path: str | Path, length: int = 16) -> str:
    """SHA-256 of a file's bytes (first ``length`` hex digits, 64 for all of it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def value_digest(obj: Any, length: int = 16) -> str:
    """SHA-256 (first ``length`` hex digits) of a cache value, however a file stores it.

    The value may nest dicts (by sorted key), lists and tuples of tensors (dtype, shape and
    bytes), numbers, strings, booleans and None; anything else is a ``TypeError``.
    """
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()[:length]


def _feed(digest: Any, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:
            raise TypeError(f"value_digest: a {obj.layout} tensor")
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {obj.dtype} {tuple(obj.shape)};".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy())  # the bytes, not copied
    elif isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda item: repr(item[0]))
        digest.update(f"dict {len(items)};".encode())
        for name, value in items:
            _feed(digest, name)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)};".encode())
        for value in obj:
            _feed(digest, value)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        digest.update(f"{type(obj).__name__} {obj!r};".encode())
    else:
        raise TypeError(f"value_digest: cannot digest a {type(obj).__name__}")


# --- keyed entries ------------------------------------------------------------------------


class KeyedEntry(NamedTuple):
    """A cache entry read back by :func:`read_keyed`: its value and content digest."""

    value: Any
    digest: str


def save_keyed(obj: Any, path: str | Path, key: str) -> str:
    """Save ``obj`` as a cache entry under ``key``; returns its content digest.

    ``key`` names everything ``obj`` was computed from; the entry also records
    :func:`value_digest` of ``obj``, which every read checks.
    """
    digest = value_digest(obj)
    save_atomic({"key": key, "value": obj, "digest": digest}, path)
    return digest


def load_keyed(path: str | Path, key: str) -> tuple[Any, str | None]:
    """``(value, None)`` for a valid entry under ``key``, else ``(None, why)``.

    See :func:`read_keyed`.
    """
    entry, why = read_keyed(path, key)
    return (None if entry is None else entry.value), why


def read_keyed(path: str | Path, key: str) -> tuple[KeyedEntry | None, str | None]:
    """``(entry, None)`` for a valid entry saved under ``key``, else ``(None, why)``.

    The entry, saved by :func:`save_keyed`, must still have the content digest recorded with
    it. ``why`` is ``"missing"``
    or a sentence naming the file: unreadable (torn, or not plain tensors), from other inputs,
    without a digest (an older layout) or changed since it was written. Nothing is trusted
    because of its name or key.
    """
    path = Path(path)
    if not path.is_file():
        return None, "missing"
    try:
        entry = load_checkpoint(path)
    except DataError:
        return None, f"'{path}' is unreadable"
    if not isinstance(entry, dict) or entry.get("key") != key or "value" not in entry:
        return None, f"'{path}' was computed from other inputs"
    digest = entry.get("digest")
    if not isinstance(digest, str):
        return None, f"'{path}' has no content digest (written by an older xmodal)"
    try:
        actual = value_digest(entry["value"])
    except TypeError:
        actual = None
    if actual != digest:
        return None, (
            f"'{path}' does not match the content digest recorded with it (changed "
            "since it was written)"
        )
    return KeyedEntry(entry["value"], digest), None


# --- units --------------------------------------------------------------------------------


@dataclass
class Unit:
    """One cached unit of work in ``directory``, keyed by the fingerprint of ``inputs``.

    Attributes:
        directory: the unit's folder; ``done.json`` and the files it vouches for live there.
        inputs: everything the unit's results depend on (plain data; see ``fingerprint``).
        is_main: whether this process writes ``done.json`` (the main process).
        notice: called with one line when a finished unit must be recomputed, and why.
        agree: makes every process take the main process's answer (a run passes one that
            broadcasts it; alone, the identity).
        explain: given the inputs a finished unit was computed from and :attr:`inputs`, the
            changes worth a line when they differ (a component's code, say); none by default:
            a changed setting recomputes silently.
    """

    directory: Path
    inputs: dict[str, Any]
    is_main: bool = True
    notice: Callable[[str], None] = lambda message: None
    agree: Callable[[Any], Any] = lambda value: value
    explain: Callable[[Any, dict[str, Any]], list[str]] = lambda before, now: []

    @property
    def key(self) -> str:
        """The fingerprint of :attr:`inputs`."""
        return fingerprint(self.inputs)

    @property
    def done_file(self) -> Path:
        """``done.json`` in the unit's folder."""
        return self.directory / "done.json"

    def record(self, files: Sequence[str] = ()) -> dict[str, Any] | None:
        """The finished unit's record, or None when it must (re)run.

        Every file the record vouches for (``record["files"]``: name -> content digest, see
        :meth:`finish`) must still have its digest, and ``files`` must be among them; a missing
        or changed file, like a malformed ``done.json``, means recompute (``notice`` says why).
        Every process gets the main process's answer.
        """
        record, why = self._read_record(files)
        if why is not None:
            self.notice(f"{self.directory}: {why}; recomputing it")
        agreed: dict[str, Any] | None = self.agree(record)
        return agreed

    def _read_record(self, files: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)``, ``(None, None)`` for other inputs, or ``(None, why)``."""
        if not self.done_file.is_file():
            return None, None
        try:
            done = json.loads(self.done_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, "its done.json is not valid JSON"  # e.g. a torn write
        if not isinstance(done, dict):
            return None, "its done.json is malformed"
        if done.get("key") != self.key:  # inputs changed: silently, unless worth a line
            changes = self.explain(done.get("inputs"), self.inputs)
            return None, "; ".join(changes) or None
        record = done.get("record")
        digests = record.get("files") if isinstance(record, dict) else None
        if (
            not isinstance(record, dict)
            or not isinstance(digests, dict)
            or not set(files) <= set(digests)
            or not all(isinstance(d, str) for d in digests.values())
        ):
            return None, "its done.json is malformed"
        for name, digest in digests.items():
            path = self.directory / name
            if not path.is_file():
                return None, f"{name} is missing"
            if file_digest(path) != digest:
                return None, f"{name} does not match the digest in done.json"
        return record, None

    def finish(self, record: dict[str, Any], files: Sequence[str] = ()) -> dict[str, Any]:
        """Mark the unit done with ``record``, vouching for ``files`` (names in its folder).

        Returns:
            ``record`` with ``"files"``: each name's content digest.
        """
        record = {**record, "files": {name: file_digest(self.directory / name) for name in files}}
        if self.is_main:
            done = {"key": self.key, "inputs": self.inputs, "record": record}
            # the bytes of core.records.write_json_atomic (which builds on this module)
            write_text_atomic(self.done_file, json.dumps(done, indent=2, default=str))
        return record
