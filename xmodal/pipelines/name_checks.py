"""Every component name in a run config is resolved when the config is loaded, before any stage
runs: a typo costs a second and one line with a suggestion, not an hour of preprocessing and
teacher training followed by a traceback."""

from __future__ import annotations

from typing import Any

from xmodal.core.errors import ConfigError
from xmodal.core.registry import DATASETS, BACKBONES, METHODS, FRONTENDS, PROBES
from xmodal.core.registry import Registry, UnknownNameError
from xmodal.pipelines.config import RunConfig


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
