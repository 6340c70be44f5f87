"""Load-time checks of a run config: every component name, and what each component needs.

A typo or an impossible combination costs a second and one line naming the config key, not an
hour of preprocessing and teacher training. :func:`check_names_early` reads the names from the
config's plain data against the registries' entry points, before the typed config (and torch)
load; the other checks run on the typed config and ask the components and stages what they need
(a method's ``needs_for``, a probe's ``consumes_pairs``, a stage's ``config_sections``), so a
plugin is checked as a built-in is. This module imports the layers it asks only inside those
checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmodal.core.config import merged_data, read_yaml, to_dict
from xmodal.core.errors import ConfigError
from xmodal.core.registry import (
    BACKBONES,
    DATASETS,
    FRONTENDS,
    METHODS,
    PIPELINES,
    PROBES,
    STAGES,
    Registry,
    UnknownNameError,
)

if TYPE_CHECKING:
    from xmodal.pipelines.config import EncoderConfig, RunConfig
    from xmodal.pipelines.spec import PipelineSpec


def _resolve(registry: Registry[Any], name: str, key: str) -> Any:
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _section(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[str]:
    """The names a config value lists: a lone name counts as a list of one (as it loads)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def component_names(data: dict[str, Any]) -> list[tuple[str, Registry[Any], str]]:
    """``(config key, registry, name)`` of every component a config names, in its plain data.

    Values of the wrong type are left out (loading the typed config reports them).
    """
    section = {key: _section(data, key) for key in ("data", "teacher", "distill", "probe")}
    teacher, distill = section["teacher"], section["distill"]
    found: list[tuple[str, Registry[Any], str]] = []

    def add(key: str, registry: Registry[Any], value: Any, listed: bool = False) -> None:
        names = _names(value)
        found.extend(
            (f"{key}[{i}]" if listed else key, registry, name) for i, name in enumerate(names)
        )

    add("data.name", DATASETS, section["data"].get("name"))
    add("teacher.modality", FRONTENDS, teacher.get("modality"))
    add("distill.students", FRONTENDS, distill.get("students"), listed=True)
    add("teacher.encoder.name", BACKBONES, _section(teacher, "encoder").get("name"))
    add("distill.encoder.name", BACKBONES, _section(distill, "encoder").get("name"))
    for modality, encoder in _section(distill, "encoders").items():
        add(f"distill.encoders.{modality}", FRONTENDS, modality)
        if isinstance(encoder, dict):
            add(f"distill.encoders.{modality}.name", BACKBONES, encoder.get("name"))
    add("distill.methods", METHODS, distill.get("methods"), listed=True)
    add("probe.probes", PROBES, section["probe"].get("probes"), listed=True)
    return found


def _check_names(named: Iterable[tuple[str, Registry[Any], str]]) -> None:
    for key, registry, name in named:
        try:
            registry.check_name(name)
        except UnknownNameError as exc:
            raise ConfigError(f"{key}: {exc}") from None


def check_names_early(
    pipeline: str,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> None:
    """Refuse an unknown pipeline, stage or component name before the layers are imported.

    Names only, from the installed entry points and the config's plain data (the pipeline's
    shipped config <- ``config_file`` <- ``overrides``), with the messages of the full checks.
    A config naming ``plugins`` (modules that register components in code) is left to them.
    """
    spec = PIPELINES.get(pipeline)
    for stage in spec.stages:
        try:
            STAGES.check_name(stage)
        except UnknownNameError as exc:
            raise ConfigError(f"pipeline '{spec.name}': {exc}") from None
    shipped = spec.config_path()
    data = merged_data(read_yaml(shipped) if shipped else {}, config_file, list(overrides))
    if data.get("plugins"):
        return
    _check_names(component_names(data))


def check_component_names(config: RunConfig) -> None:
    """Raise one :class:`ConfigError`, naming the config key, for the first name that is wrong.

    Wrong: not registered, or one the dataset cannot serve (a modality it does not provide;
    for a dataset whose modalities depend on its options, e.g. a manifest's columns, those of
    its options), or a backbone that cannot take its modality's input.
    """
    from xmodal.data.source import dataset_modalities
    from xmodal.encoders.base import layout_mismatch

    _check_names(component_names(to_dict(config)))
    source = DATASETS.get(config.data.name)
    provided = dataset_modalities(source, config.data.options())
    modalities = [("teacher.modality", config.teacher.modality)]
    modalities += [(f"distill.students[{i}]", m) for i, m in enumerate(config.distill.students)]
    for key, modality in modalities:
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
    for key, modality, encoder in _chosen_encoders(config):
        mismatch = layout_mismatch(encoder.name, modality)
        if mismatch:
            raise ConfigError(f"{key}: {mismatch}; choose another with --set {key}.name=NAME")


def reads(stages: Iterable[str], section: str) -> bool:
    """Whether one of ``stages`` reads config section ``section`` (its ``config_sections``).

    ``teacher``: the pipeline trains or loads a teacher; ``distill``: it trains students;
    ``probe``: it probes them.
    """
    return any(section in getattr(STAGES.get(s), "config_sections", ()) for s in stages)


def _chosen_encoders(config: RunConfig) -> list[tuple[str, str, EncoderConfig]]:
    """(config key, modality, backbone config) of the teacher, then of each student."""
    from xmodal.pipelines.stages.common import encoder_for

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
    """Raise one :class:`ConfigError` for the first encoder whose backbone's own check fails.

    The encoders are those ``stages`` will build (the teacher, unless ``teacher.checkpoint``
    gives it; the students); the check is the factory's ``check_options`` (a weights file that
    is not there, a library that is not installed), so that it fails before preprocessing.
    """
    builds = {"teacher.encoder": reads(stages, "teacher") and not config.teacher.checkpoint}
    for key, _, encoder in _chosen_encoders(config):
        if not builds.get(key, reads(stages, "distill")):
            continue
        check = getattr(BACKBONES.get(encoder.name), "check_options", None)
        problem = check(encoder.options_dict(), key) if check is not None else None
        if problem:
            raise ConfigError(problem)


def teacher_logits_missing(config: RunConfig, spec: PipelineSpec) -> str | None:
    """Why the run's teacher will have no logits, or None.

    A teacher with a classifier has logits over the classes it was trained on, the dataset's
    or (``teacher.task=transfer``, or a checkpoint from another label space) its own; logit
    methods read either.
    """
    if config.teacher.checkpoint:
        if not (Path(config.teacher.checkpoint) / "classifier.pt").is_file():
            return f"teacher.checkpoint '{config.teacher.checkpoint}' holds no classifier.pt"
        return None
    if not reads(spec.stages, "teacher"):
        return f"pipeline '{spec.name}' trains no teacher"
    if config.teacher.optim.epochs == 0:
        return "teacher.optim.epochs is 0, so the teacher's classifier is never trained"
    return None


def check_label_needs(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for a teacher or probe that needs labels the data lacks.

    On a dataset without labels (e.g. a manifest without a ``label`` column): a teacher that
    would train on labels, or a probe that reads them (pair probes such as ``retrieval`` need
    none).
    """
    from xmodal.data.source import dataset_labelled

    if dataset_labelled(DATASETS.get(config.data.name), config.data.options()):
        return
    name = config.data.name
    if (
        reads(spec.stages, "teacher")
        and not config.teacher.checkpoint
        and config.teacher.optim.epochs > 0
    ):
        encoder = config.teacher.encoder
        weights = getattr(BACKBONES.get(encoder.name), "weights_option", "pretrained")
        raise ConfigError(
            f"teacher.optim.epochs: the teacher trains on labels, but dataset "
            f"'{name}' has none; set teacher.optim.epochs=0 and a pretrained teacher "
            f"(teacher.encoder.{BACKBONES.options_key(encoder.name)}.{weights}), or "
            "teacher.checkpoint"
        )
    if reads(spec.stages, "probe"):
        for i, probe in enumerate(config.probe.probes):
            if not getattr(PROBES.get(probe), "consumes_pairs", False):
                raise ConfigError(
                    f"probe.probes[{i}]: probe '{probe}' needs labels, but dataset "
                    f"'{name}' has none; use probes that compare students with "
                    "their teacher (probe.probes=[retrieval]), or add labels"
                )


def check_method_needs(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for the first method whose needs this run cannot meet.

    Needs: teacher features, the teacher's logits, labels (each method's ``needs_for`` its
    options); the message names the key and the way out. Then :func:`check_label_needs`.
    """
    from xmodal.data.source import dataset_labelled

    if not reads(spec.stages, "distill"):
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
                f"choose a label-free method ({_methods_without(config, 'labels')})"
            )
        if ("teacher" in needs or "teacher_logits" in needs) and not (
            config.teacher.checkpoint or reads(spec.stages, "teacher")
        ):
            raise ConfigError(
                f"{key} needs a teacher, but pipeline '{spec.name}' has none; "
                "set teacher.checkpoint"
            )
        if "teacher_logits" in needs:
            why = teacher_logits_missing(config, spec)
            if why:
                raise ConfigError(
                    f"{key} needs the teacher's logits, but {why}; use a feature-based "
                    f"method ({_methods_without(config, 'teacher_logits')}) or give "
                    "the teacher a classifier"
                )
    check_label_needs(config, spec)


def _methods_without(config: RunConfig, *needs: str) -> str:
    """The feature-based methods that need none of ``needs``, for a message's way out.

    Asked of every registered method, with the run's options: comma-separated names.
    """
    found = []
    for name in METHODS.names():
        method = METHODS.get(name)
        if getattr(method, "trains", False):
            wants = method.needs_for(config.distill.options_for(name))
            if "teacher" in wants and not wants & set(needs):
                found.append(name)
    return ", ".join(found) or "none is registered"


def check_text_probes(config: RunConfig, spec: PipelineSpec) -> None:
    """Raise one :class:`ConfigError` for a text probe whose teacher has no usable text tower.

    A probe that reads the teacher's text tower (``zero-shot``) in a run whose teacher has none
    in its image embedding's space: a backbone without a text tower, a non-RGB teacher, or a
    teacher that training fine-tunes.
    """
    from xmodal.pipelines.stages.common import encoder_for
    from xmodal.pipelines.stages.text_teacher import (
        encoder_description,
        fine_tuned,
        text_tower_problem,
    )

    if not reads(spec.stages, "probe"):
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
        elif reads(spec.stages, "teacher"):
            encoder = encoder_for(config.teacher.modality, config.teacher.encoder)
            name, options, modality = encoder.name, encoder.options_dict(), config.teacher.modality
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
