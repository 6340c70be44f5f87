"""Every component name in a run config, and what each method needs, is checked when the config
is loaded, before any stage runs: a typo or an impossible combination costs a second and one
line naming the config key, not an hour of preprocessing and teacher training.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from xmodal.data.source import dataset_labelled, dataset_modalities
from xmodal.encoders.base import layout_mismatch
from xmodal.pipelines.config import EncoderConfig, RunConfig
from xmodal.pipelines.spec import PipelineSpec
from xmodal.pipelines.stages.common import encoder_for
from xmodal.pipelines.stages.text_teacher import encoder_description, fine_tuned, text_tower_problem


def _resolve(registry: Registry[Any], name: str, key: str) -> Any:
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_component_names(config: RunConfig) -> None:
    """Raise one :class:`ConfigError`, naming the config key, for the first name that is not
    registered or that the dataset cannot serve (a modality it does not provide; for a dataset
    whose modalities depend on its options, e.g. a manifest's columns, those of its options).
    """
    source = _resolve(DATASETS, config.data.name, "data.name")
    provided = dataset_modalities(source, config.data.options())
    modalities = [("teacher.modality", config.teacher.modality)]
    modalities += [(f"distill.students[{i}]", m) for i, m in enumerate(config.distill.students)]
    for key, modality in modalities:
        _resolve(FRONTENDS, modality, key)
        if provided and modality not in provided:
            raise ConfigError(
                f"{key}: dataset '{config.data.name}' has no modality '{modality}' "
                f"(it has {', '.join(provided)})"
            )
    if (
        config.teacher.task == "transfer"
        and not config.teacher.checkpoint
        and not hasattr(source, "teacher_task_options")
    ):
        raise ConfigError(
            f"teacher.task: dataset '{config.data.name}' has no teacher task of its own "
            "for 'transfer'; set teacher.task=probe-labels or give teacher.checkpoint"
        )
    _resolve(BACKBONES, config.teacher.encoder.name, "teacher.encoder.name")
    _resolve(BACKBONES, config.distill.encoder.name, "distill.encoder.name")
    for modality, encoder in config.distill.encoders.items():
        _resolve(FRONTENDS, modality, f"distill.encoders.{modality}")
        _resolve(BACKBONES, encoder.name, f"distill.encoders.{modality}.name")
    for key, modality, encoder in _chosen_encoders(config):
        mismatch = layout_mismatch(encoder.name, modality)
        if mismatch:
            raise ConfigError(f"{key}: {mismatch}; choose another with --set {key}.name=NAME")
    for i, method in enumerate(config.distill.methods):
        _resolve(METHODS, method, f"distill.methods[{i}]")
    for i, probe in enumerate(config.probe.probes):
        _resolve(PROBES, probe, f"probe.probes[{i}]")


def _chosen_encoders(config: RunConfig) -> list[tuple[str, str, EncoderConfig]]:
    """(config key, modality, backbone config) of the teacher, then of each student."""
    chosen = [
        (
            "teacher.encoder",
            config.teacher.modality,
            encoder_for(config.teacher.modality, config.teacher.encoder),
        )
    ]
    for m in config.distill.students:  # an image backbone for points falls back to its default
        key = f"distill.encoders.{m}" if m in config.distill.encoders else "distill.encoder"
        chosen.append((key, m, encoder_for(m, config.distill.encoder, config.distill.encoders)))
    return chosen


def check_encoder_options(config: RunConfig, stages: Sequence[str]) -> None:
    """Raise one :class:`ConfigError` for the first encoder that ``stages`` will build (the
    teacher, unless ``teacher.checkpoint`` gives it; the students) whose backbone's own
    load-time check fails (its factory's ``check_options``: a weights file that is not there,
    a library that is not installed), so that it fails before preprocessing, not after.
    """
    builds = {"teacher.encoder": "teacher" in stages and not config.teacher.checkpoint}
    for key, _, encoder in _chosen_encoders(config):
        if not builds.get(key, "distill" in stages):
            continue
        check = getattr(BACKBONES.get(encoder.name), "check_options", None)
        problem = check(dict(encoder.kwargs), key) if check is not None else None
        if problem:
            raise ConfigError(problem)


def teacher_logits_missing(config: RunConfig, spec: PipelineSpec) -> str | None:
    """Why the run's teacher will have no logits, or None. A teacher with a classifier has
    logits over the classes it was trained on, the dataset's or (``teacher.task=transfer``, or a
    checkpoint from another label space) its own; logit methods read either.
    """
    if config.teacher.checkpoint:
        if not (Path(config.teacher.checkpoint) / "classifier.pt").is_file():
            return f"teacher.checkpoint '{config.teacher.checkpoint}' holds no classifier.pt"
        return None
    if "teacher" not in spec.stages:
        return f"pipeline '{spec.name}' trains no teacher"
    if config.teacher.optim.epochs == 0:
        return "teacher.optim.epochs is 0, so the teacher's classifier is never trained"
    return None


def check_label_needs(config: RunConfig, spec: PipelineSpec) -> None:
    """On a dataset without labels (e.g. a manifest without a ``label`` column), raise one
    :class:`ConfigError` for a teacher that would train on labels or a probe that reads them
    (pair probes such as ``retrieval`` need none).
    """
    if dataset_labelled(DATASETS.get(config.data.name), config.data.options()):
        return
    name = config.data.name
    if (
        "teacher" in spec.stages
        and not config.teacher.checkpoint
        and config.teacher.optim.epochs > 0
    ):
        raise ConfigError(
            f"teacher.optim.epochs: the teacher trains on labels, but dataset "
            f"'{name}' has none; set teacher.optim.epochs=0 and a pretrained "
            "teacher (teacher.encoder.kwargs.pretrained), or teacher.checkpoint"
        )
    if "probe" in spec.stages:
        for i, probe in enumerate(config.probe.probes):
            if not getattr(PROBES.get(probe), "consumes_pairs", False):
                raise ConfigError(
                    f"probe.probes[{i}]: probe '{probe}' needs labels, but dataset "
                    f"'{name}' has none; use probes that compare students with "
                    "their teacher (probe.probes=[retrieval]), or add labels"
                )


def check_method_needs(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for the first method whose needs (teacher features, the
    teacher's logits, labels) this run cannot meet, naming the key and the way out; then for a
    teacher or probe that needs labels the dataset lacks (:func:`check_label_needs`).
    """
    if "distill" not in spec.stages:
        check_label_needs(config, spec)
        return
    labelled = dataset_labelled(DATASETS.get(config.data.name), config.data.options())
    for i, name in enumerate(config.distill.methods):
        method = METHODS.get(name)
        if not method.trains:
            continue
        needs = method.needs_for(config.distill.options_for(name))
        key = f"distill.methods[{i}]: method '{name}'"
        if "labels" in needs and not labelled:
            raise ConfigError(
                f"{key} needs labels, but dataset '{config.data.name}' has none; "
                "choose a label-free method (wcord, crd, fitnet, rkd, pkt, infonce)"
            )
        if ("teacher" in needs or "teacher_logits" in needs) and not (
            config.teacher.checkpoint or "teacher" in spec.stages
        ):
            raise ConfigError(
                f"{key} needs a teacher, but pipeline '{spec.name}' has none; "
                "set teacher.checkpoint"
            )
        if "teacher_logits" in needs:
            why = teacher_logits_missing(config, spec)
            if why:
                raise ConfigError(
                    f"{key} needs the teacher's logits, but {why}; use a "
                    "feature-based method (fitnet, crd, rkd, pkt, infonce, wcord) or give "
                    "the teacher a classifier"
                )
    check_label_needs(config, spec)


def check_text_probes(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for a probe that reads the teacher's text tower
    (``zero-shot``) in a run whose teacher has none in its image embedding's space: a backbone
    without a text tower, a non-RGB teacher, or a teacher that training fine-tunes.
    """
    if "probe" not in spec.stages:
        return
    for i, probe in enumerate(config.probe.probes):
        if not getattr(PROBES.get(probe), "consumes_text", False):
            continue
        key = f"probe.probes[{i}]: probe '{probe}' needs a frozen CLIP teacher with a text tower"
        if config.teacher.checkpoint:
            checkpoint = Path(config.teacher.checkpoint) / "encoder.pt"
            if not checkpoint.is_file():
                return  # reported by the teacher stage, naming teacher.checkpoint
            name, options, modality = encoder_description(checkpoint)
            where = f"teacher.checkpoint holds a '{name}' {modality} encoder"
            if fine_tuned(checkpoint):
                raise ConfigError(
                    f"{key}, but {where} that was fine-tuned away from its text "
                    "tower's space; give a frozen (untrained) teacher"
                )
        elif "teacher" in spec.stages:
            encoder = encoder_for(config.teacher.modality, config.teacher.encoder)
            name, options, modality = encoder.name, encoder.kwargs, config.teacher.modality
            where = f"teacher.encoder.name={name}, teacher.modality={modality}"
        else:
            return  # no teacher: the probe skips every encoder, saying so
        why = text_tower_problem(name, options, modality)
        if why:
            raise ConfigError(f"{key}, but {where}: {why}; or leave this probe out")
        if not config.teacher.checkpoint and config.teacher.optim.epochs > 0:
            raise ConfigError(
                f"{key}, but teacher.optim.epochs={config.teacher.optim.epochs} "
                "fine-tunes the teacher away from its text tower's space; set "
                "teacher.optim.epochs=0"
            )
