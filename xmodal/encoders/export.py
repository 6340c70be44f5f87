"""Exported encoders: ``encoder.safetensors`` (weights) + ``encoder.json`` (what rebuilds them).

An export is usable without the training code or the run directory: ``load_encoder(path)``
reads the JSON, builds the registered backbone behind its modality's front end and loads the
weights. Nothing in an export can execute code: safetensors holds raw tensors only, the JSON
holds names and plain options, and both are validated before use. The JSON records the
SHA-256 of the weights file, so a swapped or corrupted weights file is refused, and tools can
key caches on the weights' content.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmodal.core.atomic import (
    atomic_output,
    free_bytes,
    make_directory,
    no_space_message,
    write_text_atomic,
)
from xmodal.core.errors import DataError, OutputError, XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders.base import Encoder, create_encoder

FORMAT = "xmodal-encoder"
VERSION = 1
WEIGHTS_FILE = "encoder.safetensors"
META_FILE = "encoder.json"
#: backbone options that fetch initial weights, ignored on load (the export holds the weights),
#: unless the backbone's factory names its own (``init_only``)
_INIT_ONLY_KWARGS = ("pretrained",)
_MAX_META_BYTES = 1 << 20
_JSON_NAMES = {str: "a string", int: "an integer", dict: "an object"}
_REQUIRED = {
    "format": str,
    "version": int,
    "backbone": str,
    "backbone_kwargs": dict,
    "modality": str,
    "frontend_kwargs": dict,
    "embed_dim": int,
    "weights_sha256": str,
}


def export_encoder(
    encoder: Encoder,
    directory: str | Path,
    backbone: str,
    backbone_kwargs: dict[str, Any],
    frontend_kwargs: dict[str, Any],
    xmodal_version: str = "",
    config_hash: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/encoder.safetensors`` and ``directory/encoder.json``; returns the JSON path.

    Args:
        backbone, backbone_kwargs: the registered backbone name and its options
            (``create_encoder(backbone, modality, frontend_kwargs, **backbone_kwargs)``).
        frontend_kwargs: options of the modality's front end (e.g. the audio sample rate, Hz).
        config_hash: fingerprint of the run config that trained the encoder (provenance).
        extra: more provenance (method, role, seed), plain JSON values.
    """
    directory = make_directory(Path(directory))
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    weights_path = directory / WEIGHTS_FILE
    _save_weights(weights, weights_path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": backbone,
        "backbone_kwargs": dict(backbone_kwargs),
        "modality": encoder.modality,
        "frontend_kwargs": dict(frontend_kwargs),
        "embed_dim": encoder.embed_dim,
        "xmodal_version": xmodal_version,
        "config_hash": config_hash,
        "weights_sha256": weights_digest(weights_path),
        "extra": dict(extra or {}),
    }
    return write_text_atomic(
        directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n"
    )


def _save_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """``safetensors.torch.save_file`` through :func:`~xmodal.core.atomic.atomic_output`: free
    space checked first; a full disk (safetensors' ``SafetensorError``) is one OutputError line
    naming ``path`` and the space needed, and leaves no temporary file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    needed = sum(t.nelement() * t.element_size() for t in weights.values()) + (1 << 16)
    with atomic_output(path, needed=needed) as tmp:
        try:
            save_file(weights, str(tmp), metadata={"format": FORMAT})
        except SafetensorError as exc:
            text = str(exc).splitlines()[0] if str(exc) else "SafetensorError"
            if any(sign in text for sign in ("os error 28", "StorageFull", "No space left")):
                raise OutputError(no_space_message(path, needed, free_bytes(path))) from None
            raise OutputError(
                f"cannot write '{path}' (safetensors: {text}): check that place "
                "or pass another --out, then run the same command again"
            ) from None


def weights_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_paths(path: str | Path) -> tuple[Path, Path]:
    """``(encoder.json, encoder.safetensors)`` for a directory, either file, or raise DataError."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.is_dir() and path.name not in (META_FILE, WEIGHTS_FILE):
        raise DataError(
            f"'{path}' is not an exported encoder: give its directory or its "
            f"{META_FILE}/{WEIGHTS_FILE}"
        )
    meta, weights = directory / META_FILE, directory / WEIGHTS_FILE
    for file in (meta, weights):
        if not file.is_file():
            raise DataError(
                f"exported encoder '{directory}': {file.name} is missing; an export "
                f"is the pair {META_FILE} + {WEIGHTS_FILE}"
            )
    return meta, weights


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The validated ``encoder.json`` of an export (directory or either file)."""
    meta_path, _ = export_paths(path)
    if meta_path.stat().st_size > _MAX_META_BYTES:
        raise DataError(f"'{meta_path}' is larger than 1 MiB: not an xmodal {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"'{meta_path}' is not valid JSON ({exc.__class__.__name__}); export the encoder again"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(
            f'\'{meta_path}\' is not an xmodal encoder description (needs "format": "{FORMAT}")'
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise DataError(
                f"'{meta_path}': key '{key}' must be {_JSON_NAMES[kind]}, "
                f"got {meta.get(key)!r}; export the encoder again"
            )
    if meta["version"] > VERSION:
        raise DataError(
            f"'{meta_path}' has format version {meta['version']}; this xmodal reads "
            f"up to {VERSION}: upgrade xmodal"
        )
    return meta


def load_encoder(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A ready encoder (eval mode) from an export: its directory, ``encoder.json`` or
    ``encoder.safetensors``. Input: the modality's raw tensor; output: embeddings ``[B, D]``.

    Raises:
        DataError: a missing, corrupted, tampered or foreign file, with the path and the fix.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_export_metadata(path)
    meta_path, weights_path = export_paths(path)
    if weights_digest(weights_path) != meta["weights_sha256"]:
        raise DataError(
            f"'{weights_path}' does not match the SHA-256 recorded in {meta_path.name} "
            "(replaced or corrupted); export the encoder again"
        )
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(
            f"'{weights_path}' is not a readable safetensors file ({exc}); export the encoder again"
        ) from None
    init_only = getattr(BACKBONES.get(meta["backbone"]), "init_only", _INIT_ONLY_KWARGS)
    kwargs = {k: v for k, v in meta["backbone_kwargs"].items() if k not in init_only}
    try:
        encoder = create_encoder(
            meta["backbone"], meta["modality"], meta["frontend_kwargs"], **kwargs
        )
    except XmodalError as exc:  # e.g. tampered frontend_kwargs or backbone_kwargs
        raise DataError(
            f"'{meta_path}' does not rebuild its encoder ({exc}); export the encoder again"
        ) from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DataError(
            f"'{weights_path}' does not fit backbone '{meta['backbone']}' "
            f"({first}); export the encoder again"
        ) from None
    return encoder.to(device).eval()
