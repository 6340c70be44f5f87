"""Atomic checkpoints: write to a temporary file, then ``os.replace``, so a crash never leaves
half a file where a finished one is expected. Every file is read with ``weights_only=True``:
tensors and plain containers only, never code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from xmodal.core.atomic import atomic_output
from xmodal.core.errors import DataError, XmodalError

if TYPE_CHECKING:
    from xmodal.encoders.base import Encoder


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`xmodal.core.atomic.atomic_output` (free space checked first)."""
    with atomic_output(path, needed=payload_bytes(obj)) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def payload_bytes(obj: Any) -> int:
    """Bytes of every tensor in ``obj`` (nested dicts, lists, tuples) plus 64 KiB for the rest:
    about what ``torch.save`` writes.
    """
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values()) + (1 << 16)
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


class KeyedEntry(NamedTuple):
    """A cache entry read back by :func:`read_keyed`: its value and content digest."""

    value: Any
    digest: str


def save_keyed(obj: Any, path: str | Path, key: str) -> str:
    """Save a cache entry tagged with the ``key`` of everything it was computed from and the
    content digest of ``obj`` (:func:`value_digest`), which every read checks; returns that
    digest.
    """
    digest = value_digest(obj)
    save_atomic({"key": key, "value": obj, "digest": digest}, path)
    return digest


def load_keyed(path: str | Path, key: str) -> tuple[Any, str | None]:
    """``(value, None)`` for a cache entry saved by :func:`save_keyed` under ``key``, else
    ``(None, why)`` (see :func:`read_keyed`).
    """
    entry, why = read_keyed(path, key)
    return (None if entry is None else entry.value), why


def read_keyed(path: str | Path, key: str) -> tuple[KeyedEntry | None, str | None]:
    """``(entry, None)`` for a cache entry saved by :func:`save_keyed` under ``key`` whose
    value still has the content digest recorded with it, else ``(None, why)``: missing,
    unreadable (torn, or not plain tensors), from other inputs, without a digest (an older
    layout) or changed since it was written. Nothing is trusted because of its name or key.
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


def value_digest(obj: Any, length: int = 16) -> str:
    """SHA-256 (first ``length`` hex digits) of a cache value: nested dicts (by sorted key),
    lists and tuples of tensors (dtype, shape and bytes), numbers, strings, booleans and None.
    Independent of how the file stores it; ``TypeError`` for anything else.
    """
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()[:length]


def _feed(digest: Any, obj: Any) -> None:
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


def load_checkpoint(path: str | Path) -> Any:
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


def file_digest(path: str | Path, length: int = 16) -> str:
    """SHA-256 of a file's bytes (first ``length`` hex digits), to key caches on a checkpoint."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def save_encoder(
    encoder: Encoder,
    path: str | Path,
    name: str,
    kwargs: dict[str, Any],
    frontend_kwargs: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a self-describing encoder checkpoint: weights plus what rebuilds it."""
    return save_atomic(
        {
            "format": "xmodal-encoder",
            "version": 1,
            "name": name,
            "modality": encoder.modality,
            "kwargs": kwargs,
            "frontend_kwargs": frontend_kwargs,
            "extra": extra or {},
            "state_dict": encoder.state_dict(),
        },
        path,
    )


def load_encoder(path: str | Path) -> Encoder:
    """Rebuild an encoder saved by :func:`save_encoder`, or exported by
    :func:`xmodal.encoders.export.export_encoder` (a directory or ``encoder.json``/
    ``.safetensors``), in eval mode.
    """
    from xmodal.encoders import export
    from xmodal.encoders.base import create_encoder

    if Path(path).is_dir() or Path(path).name in (export.META_FILE, export.WEIGHTS_FILE):
        return export.load_encoder(path)  # type: ignore[return-value]
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "xmodal-encoder":
        raise DataError(
            f"'{path}' is not an xmodal encoder checkpoint (no 'format' key); "
            "save encoders with xmodal.training.checkpoint.save_encoder"
        )
    for key, kind in (
        ("name", str),
        ("modality", str),
        ("kwargs", dict),
        ("frontend_kwargs", dict),
        ("state_dict", dict),
    ):
        if not isinstance(ckpt.get(key), kind):
            raise DataError(
                f"'{path}': key '{key}' must be a {kind.__name__}, got "
                f"{type(ckpt.get(key)).__name__}; save the encoder again"
            )
    try:
        encoder = create_encoder(
            ckpt["name"], ckpt["modality"], ckpt["frontend_kwargs"], **ckpt["kwargs"]
        )
    except XmodalError as exc:
        raise DataError(
            f"'{path}' does not rebuild its encoder ({exc}); save the encoder again"
        ) from None
    try:
        encoder.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise DataError(
            f"'{path}': its weights do not fit backbone '{ckpt['name']}' "
            f"({(lines[1] if len(lines) > 1 else lines[0]).strip()}); save the "
            "encoder again"
        ) from None
    return encoder.eval()
