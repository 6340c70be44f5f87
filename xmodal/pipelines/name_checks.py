"""Every component name in a run config is resolved when the config is loaded, before any stage
runs: a typo costs a second and one line with a suggestion, not an hour of preprocessing and
teacher training followed by a traceback."""

from __future__ import annotations

from typing import Any

from xmodal.core.errors import ConfigError
from xmodal.core.registries import DATASETS, ENCODERS, LOSSES, MODALITIES, PROBES
from xmodal.core.registry import Registry, UnknownNameError
from xmodal.encoders.base import backbone_fits, layout_of
from xmodal.pipelines.config import RunConfig
from xmodal.pipelines.stages.common import encoder_for


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
        _resolve(MODALITIES, modality, key)
        if provided and modality not in provided:
            raise ConfigError(f"{key}: dataset '{config.data.name}' has no modality '{modality}' "
                              f"(it has {', '.join(provided)})")
    _resolve(ENCODERS, config.teacher.encoder.name, "teacher.encoder.name")
    _resolve(ENCODERS, config.distill.encoder.name, "distill.encoder.name")
    for modality, encoder in config.distill.encoders.items():
        _resolve(MODALITIES, modality, f"distill.encoders.{modality}")
        _resolve(ENCODERS, encoder.name, f"distill.encoders.{modality}.name")
    chosen = [("teacher.encoder", config.teacher.modality,
               encoder_for(config.teacher.modality, config.teacher.encoder))]
    for m in config.distill.students:  # an image backbone for points falls back to its default
        key = f"distill.encoders.{m}" if m in config.distill.encoders else "distill.encoder"
        chosen.append((key, m, encoder_for(m, config.distill.encoder, config.distill.encoders)))
    for key, modality, encoder in chosen:
        if not backbone_fits(encoder.name, modality):
            raise ConfigError(f"{key}: encoder '{encoder.name}' takes "
                              f"{layout_of(ENCODERS.get(encoder.name))} input, but modality "
                              f"'{modality}' gives {layout_of(MODALITIES.get(modality))} input; "
                              f"choose another with --set {key}.name=NAME")
    for i, method in enumerate(config.distill.methods):
        _resolve(LOSSES, method, f"distill.methods[{i}]")
    for i, probe in enumerate(config.probe.probes):
        _resolve(PROBES, probe, f"probe.probes[{i}]")
