"""Encoder files: exports (``encoder.safetensors`` + ``encoder.json``) and checkpoints (``.pt``).

An export is usable without the training code or the run directory: :func:`load_encoder` reads
the JSON, builds the registered backbone behind its modality's front end and loads the
weights. Nothing in an export can execute code: safetensors holds raw tensors only, the JSON
holds names and plain options, and both are validated before use. The JSON records the
SHA-256 of the weights file, so a swapped or corrupted weights file is refused, and tools can
key caches on the weights' content; it also records the package (and version) providing its
front end and backbone, so that loading it where one is missing names the package to install.

A run also keeps each encoder as a checkpoint (``encoder.pt``, :func:`save_encoder`): the
weights and what rebuilds them in one tensor file, read with ``weights_only=True`` (never
code). :func:`load_encoder` reads either.

Both files name the options ``backbone_options``/``frontend_options`` (the JSON) and
``options``/``frontend_options`` (the checkpoint) since format version 2; files of version 1,
which named them ``backbone_kwargs``/``frontend_kwargs`` and ``kwargs``, are still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from xmodal.core.cache import (
    atomic_output,
    file_digest,
    free_bytes,
    load_checkpoint,
    make_directory,
    no_space_message,
    save_atomic,
    write_text_atomic,
)
from xmodal.core.errors import DataError, OutputError, XmodalError
from xmodal.core.identity import component_identity
from xmodal.core.registry import BACKBONES, FRONTENDS, OWN_PACKAGE
from xmodal.encoders.base import Encoder, create_encoder

#: ``format`` of both encoder files: an export's JSON and a checkpoint (:func:`save_encoder`)
FORMAT = "xmodal-encoder"
VERSION = 2
WEIGHTS_FILE = "encoder.safetensors"
META_FILE = "encoder.json"
#: backbone options that fetch initial weights, ignored on load (the file holds the weights),
#: unless the backbone's factory names its own (``init_only``)
_INIT_ONLY_OPTIONS = ("pretrained",)
#: the keys of format version 1 (options named ``kwargs``), read as those of version 2
_FORMER_KEYS = {
    "backbone_kwargs": "backbone_options",
    "frontend_kwargs": "frontend_options",
    "kwargs": "options",
}
_MAX_META_BYTES = 1 << 20
_JSON_NAMES = {str: "a string", int: "an integer", dict: "an object"}
_REQUIRED = {
    "format": str,
    "version": int,
    "backbone": str,
    "backbone_options": dict,
    "modality": str,
    "frontend_options": dict,
    "embed_dim": int,
    "weights_sha256": str,
}


def export_encoder(
    encoder: Encoder,
    directory: str | Path,
    backbone: str,
    backbone_options: dict[str, Any],
    frontend_options: dict[str, Any],
    xmodal_version: str = "",
    config_hash: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/encoder.safetensors`` and ``directory/encoder.json``.

    Args:
        encoder: the encoder to export.
        directory: where the two files go (created if needed).
        backbone: the registered backbone name
            (``create_encoder(backbone, modality, frontend_options, **backbone_options)``).
        backbone_options: the backbone's options.
        frontend_options: options of the modality's front end (e.g. the audio sample rate, Hz).
        xmodal_version: the xmodal version that wrote it (provenance).
        config_hash: fingerprint of the run config that trained the encoder (provenance).
        extra: more provenance (method, role, seed), plain JSON values.

    Returns:
        The path of ``encoder.json``.
    """
    directory = make_directory(Path(directory))
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    weights_path = directory / WEIGHTS_FILE
    _save_weights(weights, weights_path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": backbone,
        "backbone_options": dict(backbone_options),
        "modality": encoder.modality,
        "frontend_options": dict(frontend_options),
        "embed_dim": encoder.embed_dim,
        "xmodal_version": xmodal_version,
        "config_hash": config_hash,
        "weights_sha256": file_digest(weights_path, length=64),
        "components": providers(encoder.modality, backbone),
        "extra": dict(extra or {}),
    }
    return write_text_atomic(
        directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n"
    )


def providers(modality: str, backbone: str) -> dict[str, dict[str, str]]:
    """``{"frontend": ..., "backbone": ...}``: each one's ``name``, ``package`` and ``version``.

    The distributions an encoder's files need to be loaded back (see :func:`load_encoder`); a
    name that is not registered is left out.
    """
    found = {}
    for role, registry, name in (
        ("frontend", FRONTENDS, modality),
        ("backbone", BACKBONES, backbone),
    ):
        if name in registry:
            identity = component_identity(registry.kind, name)
            found[role] = {key: identity[key] for key in ("name", "package", "version")}
    return found


def _save_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """``safetensors.torch.save_file`` through :func:`~xmodal.core.cache.atomic_output`.

    Free space is checked first; a full disk (safetensors' ``SafetensorError``) is one
    OutputError line naming ``path`` and the space needed, and leaves no temporary file.
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
    """The validated ``encoder.json`` of an export (directory or either file).

    Under the keys of the current format version (a version 1 file's ``backbone_kwargs`` and
    ``frontend_kwargs`` as ``backbone_options`` and ``frontend_options``).
    """
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
    meta = current_keys(meta)
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


def current_keys(record: dict[str, Any]) -> dict[str, Any]:
    """An encoder file's record under the current keys (version 1's ``*kwargs`` renamed).

    For ``encoder.json`` and ``encoder.pt`` alike; a record of the current version is returned
    as it is.
    """
    return {
        _FORMER_KEYS.get(k, k) if _FORMER_KEYS.get(k) not in record else k: v
        for k, v in record.items()
    }


def save_encoder(
    encoder: Encoder,
    path: str | Path,
    name: str,
    options: dict[str, Any],
    frontend_options: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save an encoder checkpoint (``.pt``): its weights and what rebuilds them, atomically.

    Args:
        encoder: the encoder to save.
        path: the checkpoint file.
        name: the registered backbone name.
        options: the backbone's options.
        frontend_options: options of the modality's front end.
        extra: provenance (e.g. the method), plain values.
    """
    return save_atomic(
        {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "modality": encoder.modality,
            "options": options,
            "frontend_options": frontend_options,
            "extra": extra or {},
            "state_dict": encoder.state_dict(),
        },
        path,
    )


def load_encoder(path: str | Path, device: torch.device | str = "cpu") -> Encoder:
    """A ready encoder (eval mode, on ``device``) from an export or an encoder checkpoint.

    ``path`` is an export (its directory, ``encoder.json`` or ``encoder.safetensors``) or a
    checkpoint written by :func:`save_encoder` (``encoder.pt``). Input: the modality's raw
    tensor; output: embeddings ``[B, D]``.

    Raises:
        DataError: a missing, corrupted, tampered or foreign file, with the path and the fix.
    """
    path = Path(path)
    if path.is_dir() or path.name in (META_FILE, WEIGHTS_FILE):
        encoder = _load_export(path)
    else:
        encoder = _load_checkpoint_file(path)
    return encoder.to(device).eval()


def _load_export(path: Path) -> Encoder:
    """The encoder of an export (validated, its weights checked against the JSON's SHA-256)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_export_metadata(path)
    meta_path, weights_path = export_paths(path)
    if file_digest(weights_path, length=64) != meta["weights_sha256"]:
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
    return _rebuild(
        meta["backbone"],
        meta["modality"],
        meta["frontend_options"],
        meta["backbone_options"],
        state,
        described=meta_path,
        weights=weights_path,
        fix="export the encoder again",
        components=meta.get("components"),
    )


def _load_checkpoint_file(path: Path) -> Encoder:
    """The encoder of a checkpoint written by :func:`save_encoder` (its keys validated)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(
            f"'{path}' is not an xmodal encoder checkpoint (no 'format' key) nor an export; "
            "save encoders with xmodal.encoders.export.save_encoder or export_encoder"
        )
    ckpt = current_keys(ckpt)
    for key, kind in (
        ("name", str),
        ("modality", str),
        ("options", dict),
        ("frontend_options", dict),
        ("state_dict", dict),
    ):
        if not isinstance(ckpt.get(key), kind):
            raise DataError(
                f"'{path}': key '{key}' must be a {kind.__name__}, got "
                f"{type(ckpt.get(key)).__name__}; save the encoder again"
            )
    return _rebuild(
        ckpt["name"],
        ckpt["modality"],
        ckpt["frontend_options"],
        ckpt["options"],
        ckpt["state_dict"],
        described=path,
        weights=path,
        fix="save the encoder again",
    )


def _rebuild(
    backbone: str,
    modality: str,
    frontend_options: dict[str, Any],
    backbone_options: dict[str, Any],
    state: dict[str, torch.Tensor],
    *,
    described: Path,
    weights: Path,
    fix: str,
    components: Any = None,
) -> Encoder:
    """Build ``backbone`` behind ``modality``'s front end and load ``state`` into it.

    Options that only fetch initial weights (``init_only``) are left out: the file holds the
    weights. Errors name ``described`` (the file with the options) or ``weights``, and ``fix``;
    a front end or backbone that is not installed names the package ``components`` (the
    file's record of :func:`providers`) says provides it.
    """
    check_installed(described, components, modality, backbone)
    try:  # an unknown backbone, or tampered frontend or backbone options
        init_only = getattr(BACKBONES.get(backbone), "init_only", _INIT_ONLY_OPTIONS)
        options = {k: v for k, v in backbone_options.items() if k not in init_only}
        encoder = create_encoder(backbone, modality, frontend_options, **options)
    except XmodalError as exc:
        raise DataError(f"'{described}' does not rebuild its encoder ({exc}); {fix}") from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DataError(
            f"'{weights}' does not fit backbone '{backbone}' ({first}); {fix}"
        ) from None
    return encoder


def check_installed(described: Path, components: Any, modality: str, backbone: str) -> None:
    """Raise DataError naming the package to install for a front end or backbone not installed.

    ``components`` is the file's record of :func:`providers` (``encoder.json``'s); files
    without one (written before it) pass, and rebuilding them reports the unknown name.
    """
    for role, registry, name in (
        ("frontend", FRONTENDS, modality),
        ("backbone", BACKBONES, backbone),
    ):
        record = components.get(role) if isinstance(components, dict) else None
        if name in registry or not isinstance(record, dict):
            continue
        package, version = record.get("package"), record.get("version")
        if not isinstance(package, str) or not package or package == OWN_PACKAGE:
            continue  # a built-in this xmodal lacks: the rebuild names it with close matches
        noun = "front end" if role == "frontend" else role
        at = f" ({version})" if isinstance(version, str) and version else ""
        raise DataError(
            f"{described} needs package '{package}'{at} for {noun} '{name}': pip install {package}"
        )
