"""What the probe stage gives text-reading probes (``zero-shot``).

That is the teacher's class text embeddings, from its backbone's text tower, and a student's
saved objective heads.

Either is a value or the reason it cannot be had (a student trained by a method without heads,
a teacher without a text tower or one that was fine-tuned away from it); the stage skips the
probe for that model with the reason, never with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from xmodal.core.cache import file_digest, load_checkpoint
from xmodal.core.config import fingerprint
from xmodal.core.errors import DataError
from xmodal.core.registry import BACKBONES, FRONTENDS, METHODS
from xmodal.encoders.export import (
    FORMAT,
    META_FILE,
    WEIGHTS_FILE,
    current_keys,
    read_export_metadata,
)
from xmodal.evaluation.zero_shot_probe import class_text_embeddings
from xmodal.objectives.shared_heads import HEADS_FILE, SharedHeads
from xmodal.pipelines.state import ModelRecord


def encoder_description(checkpoint: str | Path) -> tuple[str, dict[str, Any], str]:
    """``(backbone name, backbone options, modality)`` of a saved encoder.

    The encoder is an ``encoder.pt`` written by :func:`~xmodal.encoders.export.save_encoder`
    (read memory-mapped, its weights untouched) or an export.
    """
    path = Path(checkpoint)
    if path.is_dir() or path.name in (META_FILE, WEIGHTS_FILE):
        meta = read_export_metadata(path)
        return meta["backbone"], dict(meta["backbone_options"]), meta["modality"]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise DataError(
            f"encoder checkpoint '{path}' is unreadable ({exc.__class__.__name__}); "
            "rerun the stage that writes it"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"'{path}' is not an xmodal encoder checkpoint")
    ckpt = current_keys(ckpt)  # a version 1 file names the options "kwargs"
    return str(ckpt["name"]), dict(ckpt["options"]), str(ckpt["modality"])


def text_tower_problem(name: str, options: dict[str, Any], modality: str) -> str | None:
    """Why backbone ``name`` gives no text tower in its image embedding's space, or None.

    ``options`` are the backbone's, ``modality`` what it reads. A backbone factory offers a
    text tower with a ``text_tower`` attribute (and may explain a missing one with
    ``text_tower_missing(options)``).
    """
    factory = BACKBONES.get(name)
    if getattr(factory, "text_tower", None) is None:
        return (
            f"backbone '{name}' has no text tower; use teacher.encoder.name=open_clip, or hf "
            "with a CLIP or SigLIP folder"
        )
    missing = getattr(factory, "text_tower_missing", None)
    why: str | None = missing(**options) if missing is not None else None
    if why:
        return why
    if not getattr(FRONTENDS.get(modality), "gives_pixels", False):
        return (
            f"its text tower describes RGB images, but it reads '{modality}'; set "
            "teacher.modality=rgb"
        )
    return None


def fine_tuned(checkpoint: str | Path) -> bool:
    """Whether the encoder saved at ``checkpoint`` was trained.

    It was when its unit's ``history.json`` has epochs: then its image embeddings have left
    its text tower's space.
    """
    history = Path(checkpoint).parent / "history.json"
    if not history.is_file():
        return False
    try:
        return bool(json.loads(history.read_bytes().decode("utf-8")))
    except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON: trained or not, unknown
        raise DataError(
            f"'{history}' is not readable JSON, so whether that encoder was "
            "fine-tuned is unknown; delete its folder to retrain it"
        ) from None


def teacher_text_problem(teacher: ModelRecord) -> str | None:
    """Why ``teacher`` gives no class text vectors in its image embedding's space, or None."""
    name, options, modality = encoder_description(teacher.checkpoint)
    why = text_tower_problem(name, options, modality)
    if why is None and fine_tuned(teacher.checkpoint):
        why = "it was fine-tuned, so its image embeddings left its text tower's space"
    return f"teacher: {why}" if why else None


def teacher_text(
    ctx: Any,
    teacher: ModelRecord,
    class_names: list[str],
    templates: list[str],
    memo: dict[str, Any],
) -> torch.Tensor:
    """Unit class text vectors ``[C, Dt]`` from ``teacher``'s text tower.

    The tower is built from the options its checkpoint was built with; the vectors are
    computed once per teacher, names and templates (``memo``).
    """
    key = fingerprint({"teacher": teacher.key, "names": class_names, "templates": templates})
    if key not in memo:
        name, options, _ = encoder_description(teacher.checkpoint)
        tower = BACKBONES.get(name).text_tower(**options)
        device = ctx.accelerator.device
        memo[key] = class_text_embeddings(
            lambda texts: tower.encode(texts, device=device), class_names, templates
        )
    vectors: torch.Tensor = memo[key]
    return vectors


def student_heads(model: ModelRecord) -> tuple[SharedHeads, str] | str:
    """A student's saved objective heads and the file's digest, or why it has none."""
    path = Path(model.checkpoint).parent / HEADS_FILE
    if not path.is_file():
        method = METHODS.get(model.method) if model.method in METHODS else None
        if not getattr(method, "shared_heads", False):
            return (
                f"method '{model.method}' has no teacher/student projection heads; "
                "wcord*, crd and infonce have"
            )
        return (
            f"no {HEADS_FILE} beside its encoder: trained before xmodal saved the heads; "
            "delete its folder to retrain it"
        )
    try:
        return SharedHeads.from_state(load_checkpoint(path), str(path)), file_digest(path)
    except ValueError as exc:
        raise DataError(f"{exc}; delete that folder to retrain the student") from None


__all__ = [
    "encoder_description",
    "fine_tuned",
    "student_heads",
    "teacher_text",
    "teacher_text_problem",
    "text_tower_problem",
]
