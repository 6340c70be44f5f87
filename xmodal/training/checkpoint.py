"""Atomic checkpoints: write to a temporary file, then ``os.replace``, so a crash never leaves
half a file where a finished one is expected. Every file is read with ``weights_only=True``:
tensors and plain containers only, never code."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xmodal.core.atomic import atomic_output
from xmodal.core.errors import DataError

if TYPE_CHECKING:
    from xmodal.encoders.base import Encoder


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`xmodal.core.atomic.atomic_output` (free space checked first)."""
    with atomic_output(path, needed=payload_bytes(obj)) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def payload_bytes(obj: Any) -> int:
    """Bytes of every tensor in ``obj`` (nested dicts, lists, tuples) plus 64 KiB for the rest:
    about what ``torch.save`` writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values()) + (1 << 16)
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def save_keyed(obj: Any, path: str | Path, key: str) -> Path:
    """Save a cache entry tagged with the ``key`` of everything it was computed from."""
    return save_atomic({"key": key, "value": obj}, path)


def load_keyed(path: str | Path, key: str) -> tuple[Any, str | None]:
    """``(value, None)`` for a cache entry saved by :func:`save_keyed` under ``key``, else
    ``(None, why)``: missing, unreadable (torn, or not plain tensors) or from other inputs."""
    path = Path(path)
    if not path.is_file():
        return None, "missing"
    try:
        entry = load_checkpoint(path)
    except DataError:
        return None, f"'{path}' is unreadable"
    if not isinstance(entry, dict) or entry.get("key") != key or "value" not in entry:
        return None, f"'{path}' was computed from other inputs"
    return entry["value"], None


def load_checkpoint(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist; rerun the stage that writes it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"checkpoint '{path}' is unreadable ({exc.__class__.__name__}); delete it "
                        "and rerun the run to recompute it") from None


def file_digest(path: str | Path, length: int = 16) -> str:
    """SHA-256 of a file's bytes (first ``length`` hex digits), to key caches on a checkpoint."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def save_encoder(encoder: "Encoder", path: str | Path, name: str, kwargs: dict[str, Any],
                 frontend_kwargs: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save a self-describing encoder checkpoint: weights plus what rebuilds it."""
    return save_atomic({"format": "xmodal-encoder", "version": 1, "name": name,
                        "modality": encoder.modality, "kwargs": kwargs,
                        "frontend_kwargs": frontend_kwargs, "extra": extra or {},
                        "state_dict": encoder.state_dict()}, path)


def load_encoder(path: str | Path) -> "Encoder":
    """Rebuild an encoder saved by :func:`save_encoder`, or exported by
    :func:`xmodal.encoders.export.export_encoder` (a directory or ``encoder.json``/
    ``.safetensors``), in eval mode."""
    from xmodal.encoders import export
    from xmodal.encoders.base import create_encoder

    if Path(path).is_dir() or Path(path).name in (export.META_FILE, export.WEIGHTS_FILE):
        return export.load_encoder(path)  # type: ignore[return-value]
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "xmodal-encoder":
        raise DataError(f"'{path}' is not an xmodal encoder checkpoint (no 'format' key); "
                        "save encoders with xmodal.training.checkpoint.save_encoder")
    encoder = create_encoder(ckpt["name"], ckpt["modality"], ckpt["frontend_kwargs"], **ckpt["kwargs"])
    encoder.load_state_dict(ckpt["state_dict"])
    return encoder.eval()
