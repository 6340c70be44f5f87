"""Every component name in a run config, and what each method needs, is checked when the config
is loaded, before any stage runs: a typo or an impossible combination costs a second and one
line naming the config key, not an hour of preprocessing and teacher training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmodal.core.errors import ConfigError
from xmodal.core.registry import (
    BACKBONES,
    DATASETS,
    FRONTENDS,
    METHODS,
    PROBES,
    Registry,
    UnknownNameError,
)
from xmodal.pipelines.config import RunConfig
from xmodal.pipelines.spec import PipelineSpec


def _resolve(registry: Registry[Any], name: str, key: str) -> Any:
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_component_names(config: RunConfig) -> None:
    """Raise one :class:`ConfigError`, naming the config key, for the first name that is not
    registered or that the dataset cannot serve (a modality it does not provide)."""
    source = _resolve(DATASETS, config.data.name, "data.name")
    provided = tuple(getattr(source, "modalities", ()))
    modalities = [("teacher.modality", config.teacher.modality)]
    modalities += [(f"distill.students[{i}]", m) for i, m in enumerate(config.distill.students)]
    for key, modality in modalities:
        _resolve(FRONTENDS, modality, key)
        if provided and modality not in provided:
            raise ConfigError(f"{key}: dataset '{config.data.name}' has no modality '{modality}' "
                              f"(it has {', '.join(provided)})")
    _resolve(BACKBONES, config.teacher.encoder.name, "teacher.encoder.name")
    _resolve(BACKBONES, config.distill.encoder.name, "distill.encoder.name")
    for i, method in enumerate(config.distill.methods):
        _resolve(METHODS, method, f"distill.methods[{i}]")
    for i, probe in enumerate(config.probe.probes):
        _resolve(PROBES, probe, f"probe.probes[{i}]")


def teacher_logits_missing(config: RunConfig, spec: PipelineSpec) -> str | None:
    """Why the run's teacher will have no logits over the dataset's classes, or None."""
    if config.teacher.checkpoint:
        if not (Path(config.teacher.checkpoint) / "classifier.pt").is_file():
            return f"teacher.checkpoint '{config.teacher.checkpoint}' holds no classifier.pt"
        return None
    if "teacher" not in spec.stages:
        return f"pipeline '{spec.name}' trains no teacher"
    if config.teacher.optim.epochs == 0:
        return "teacher.optim.epochs is 0, so the teacher's classifier is never trained"
    return None


def check_method_needs(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for the first method whose needs (teacher features, the
    teacher's logits, labels) this run cannot meet, naming the key and the way out."""
    if "distill" not in spec.stages:
        return
    labelled = getattr(DATASETS.get(config.data.name), "labelled", True)
    for i, name in enumerate(config.distill.methods):
        method = METHODS.get(name)
        if not method.trains:
            continue
        needs = method.needs_for(config.distill.options_for(name))
        key = f"distill.methods[{i}]: method '{name}'"
        if "labels" in needs and not labelled:
            raise ConfigError(f"{key} needs labels, but dataset '{config.data.name}' has none; "
                              "choose a label-free method (wcord, crd, fitnet, rkd, pkt)")
        if ("teacher" in needs or "teacher_logits" in needs) and not (
                config.teacher.checkpoint or "teacher" in spec.stages):
            raise ConfigError(f"{key} needs a teacher, but pipeline '{spec.name}' has none; "
                              "set teacher.checkpoint")
        if "teacher_logits" in needs:
            why = teacher_logits_missing(config, spec)
            if why:
                raise ConfigError(f"{key} needs the teacher's logits, but {why}; use a "
                                  "feature-based method (fitnet, crd, rkd, pkt, wcord) or give "
                                  "the teacher a classifier")
