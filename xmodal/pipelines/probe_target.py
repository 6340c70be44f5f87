"""``xmodal probe``: run the probes on encoders that come from outside a pipeline run.

A target is an exported encoder (its directory, ``encoder.json`` or ``encoder.safetensors``),
a run directory (every encoder it exported: teacher and students), or a registered backbone
name (built with its pretrained weights and options and exported first, so every target is
probed the same way). ``xmodal probe`` is a mode of the one runner
(:func:`~xmodal.pipelines.runner.execute`): the pipeline's own ``preprocess`` stage, then
:class:`ProbeTargets`, then its ``probe`` and ``report`` stages, so rows, caches, the report and
the run directory (lock, trackers, ``config.yaml``) match a run's.

Feature caches are keyed by :func:`target_digest`: the SHA-256 of the weights file, the
modality, the front end's options and the dataset's cache key (dataset, options such as image
size or depth encoding). Each cache file holds one tensor per split; the probe units are keyed
by the same digest, so new weights mean new features and new probe results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import xmodal
from xmodal.core.config import fingerprint, from_dict, parse_override, read_yaml
from xmodal.core.errors import ConfigError
from xmodal.core.registry import BACKBONES, DATASETS, PROBES, STAGES
from xmodal.data.source import dataset_modalities
from xmodal.encoders.base import create_encoder
from xmodal.encoders.export import (
    META_FILE,
    WEIGHTS_FILE,
    check_installed,
    export_encoder,
    read_export_metadata,
)
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.runner import RunResult, check_out, execute, resolve_config
from xmodal.pipelines.state import ModelRecord


def find_exports(target: Path) -> list[Path]:
    """The ``encoder.json`` files a path target stands for (one export, or a run's exports)."""
    if target.is_file() and target.name in (META_FILE, WEIGHTS_FILE):
        return [target.parent / META_FILE]
    if (target / META_FILE).is_file():
        return [target / META_FILE]
    if target.is_dir():
        found = sorted(
            p for p in target.glob(f"**/{META_FILE}") if "probe-targets" not in p.parts
        )  # not a previous probe's own exports
        if found:
            return found
        raise ConfigError(
            f"'{target}' holds no exported encoder ({META_FILE} + {WEIGHTS_FILE}); "
            "runs write them since xmodal 0.1: rerun the run to export its encoders"
        )
    raise ConfigError(
        f"'{target}' is not an exported encoder ({META_FILE}/{WEIGHTS_FILE} or their directory)"
    )


def enclosing_run_config(path: Path) -> Path | None:
    """The ``config.yaml`` of the run directory holding ``path``, if any."""
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def target_digest(meta: dict[str, Any], data_key: str) -> str:
    """Cache key of one encoder's features on one prepared dataset (see the module docstring)."""
    return fingerprint(
        {
            "weights": meta["weights_sha256"],
            "modality": meta["modality"],
            "frontend": meta["frontend_options"],
            "data": data_key,
        }
    )


@dataclass
class ProbeTargets:
    """The step ``xmodal probe`` runs between ``preprocess`` and ``probe``: its targets.

    It sets ``ctx.state.models`` (one record per encoder, checked against the prepared dataset)
    and ``probe.probes`` (the probes asked for; by default the config's, pair probes such as
    ``retrieval`` only when a teacher is among the targets).

    Attributes:
        path: an exported encoder or a run directory; None for a backbone.
        backbone: a registered backbone, built and exported into ``probe-targets/<backbone>``.
        backbone_options: its options (see :func:`_backbone_options`).
        modality: the backbone's input modality (None: the config's teacher modality).
        probes: the probes asked for (None: the config's that fit the targets).
    """

    path: Path | None = None
    backbone: str | None = None
    backbone_options: dict[str, Any] = field(default_factory=dict)
    modality: str | None = None
    probes: list[str] | None = None

    def __call__(self, ctx: RunContext) -> None:
        """Set ``ctx.state.models`` and ``ctx.config.probe.probes`` (see the class docstring)."""
        if self.backbone is not None:
            exports = [self._export_backbone(ctx, self.backbone)]
        elif self.path is not None:
            exports = find_exports(self.path)
        else:
            raise ValueError("ProbeTargets needs a path or a backbone")
        models = [_model_record(ctx, meta_path) for meta_path in exports]
        has_teacher = any(m.role == "teacher" for m in models)
        ctx.config.probe.probes = self.probes or [
            p
            for p in ctx.config.probe.probes
            if has_teacher or not getattr(PROBES.get(p), "consumes_pairs", False)
        ]
        ctx.state.models = models

    def _export_backbone(self, ctx: RunContext, backbone: str) -> Path:
        """Build the backbone for the dataset's front end and export it; returns its JSON path.

        Exported, it is probed as any exported encoder is. The main process exports, and every
        process reads that one export.
        """
        modality = self.modality or ctx.config.teacher.modality
        frontend = ctx.state.dataset.frontend_kwargs.get(modality, {})
        directory = ctx.run_dir / "probe-targets" / backbone
        if ctx.accelerator.is_main_process:
            encoder = create_encoder(backbone, modality, frontend, **self.backbone_options)
            export_encoder(
                encoder,
                directory,
                backbone,
                self.backbone_options,
                frontend,
                xmodal.__version__,
                extra={"method": backbone, "role": "pretrained"},
            )
        ctx.accelerator.wait_for_everyone()
        return directory / META_FILE


def probe_target(
    target: str,
    out: str | Path | None = None,
    data: str | None = None,
    probes: list[str] | None = None,
    pipeline: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    modality: str | None = None,
    pretrained: str | None = None,
    options: list[str] | tuple[str, ...] = (),
    console: Console | None = None,
) -> RunResult:
    """Probe ``target`` on a pipeline's dataset, through the runner as ``xmodal run`` is.

    The stages are ``preprocess``, :class:`ProbeTargets`, ``probe`` and ``report``, run by
    :func:`~xmodal.pipelines.runner.execute` (the run lock on ``out``, the launch guard,
    ``runtime.threads``, mixed precision, trackers); ``out`` receives ``results.json``,
    ``summary.json``, ``report.md`` and ``config.yaml``.

    Args:
        target: an exported encoder (its directory or a file), a run directory, or a
            registered backbone's name.
        out: the run directory (default ``runs/probe-<target's name>``).
        data: a registered dataset name (``scenes``) or the dataset's file (``.mat`` for NYU).
        probes: registered probes (default: the config's ``probe.probes``; pair probes such as
            ``retrieval`` only when a teacher is among the targets).
        pipeline: the pipeline whose config sets the dataset and probe options (default: that
            of the run holding the target, else ``scenes``).
        config_file: YAML overriding that config (default: the ``config.yaml`` of the run
            holding the target).
        overrides: ``KEY=VALUE`` strings, e.g. ``["probe.knn.k=10"]``.
        modality: a backbone target's input modality (default: the config's teacher modality).
        pretrained: a backbone target's weights (the option its factory names in
            ``weights_option``: ``pretrained`` for torchvision nets and open_clip, ``weights``
            for timm, ``model`` for hf; default: the factory's ``probe_weights``, ``imagenet``
            for torchvision nets, else the option's own default).
        options: a backbone target's other options as ``KEY=VALUE`` (YAML values; dotted keys
            reach into dict options), e.g. ``model=vit_small_patch14_dinov2.lvd142m``.
        console: where the main process prints.
    """
    check_out(out)
    path = Path(target)
    step = ProbeTargets(modality=modality, probes=probes)
    if path.exists():
        step.path = path
    elif target in BACKBONES:
        step.backbone = target
        step.backbone_options = _backbone_options(target, pretrained, options)
    else:
        raise ConfigError(
            f"probe target '{target}' is not a path (exported encoder or run "
            f"directory) nor a registered backbone ({', '.join(BACKBONES.names())})"
        )
    run_config = None if step.backbone else enclosing_run_config(path)
    if config_file is None and run_config is not None:
        config_file = run_config
    overrides = list(overrides)
    data_path = None
    if data is not None:
        if data in DATASETS:
            overrides.append(f"data.name={data}")
        else:
            data_path = data
    spec_name = pipeline or (_pipeline_of(config_file) if config_file else "scenes")
    # only preprocessing and probes run here: the pipeline's teacher and students are never built
    _, config = resolve_config(
        spec_name, config_file, overrides, data_path, stages=["preprocess", "probe", "report"]
    )
    for probe_name in probes or []:
        PROBES.get(probe_name)  # a typo fails before any work
    name = step.backbone or (path.parent.name if path.is_file() else path.name) or "target"
    return execute(
        "probe",
        config,
        Path(out) if out is not None else Path("runs") / f"probe-{name}",
        [STAGES.get("preprocess"), step, STAGES.get("probe"), STAGES.get("report")],
        title=f"xmodal probe {target}",
        console=console,
    )


def _backbone_options(
    backbone: str, pretrained: str | None, options: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """The options of a backbone-name target: ``--option KEY=VALUE``s, then its weights.

    They are checked against the backbone's options as ``teacher.encoder.<backbone>`` is.
    """
    factory = BACKBONES.get(backbone)
    chosen: dict[str, Any] = {}
    for text in options:
        keys, value = parse_override(text)
        node = chosen
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--option '{text}': '{key}' is not a mapping option")
        node[keys[-1]] = value
    weights = pretrained if pretrained is not None else getattr(factory, "probe_weights", None)
    if weights is not None:
        chosen[getattr(factory, "weights_option", "pretrained")] = weights
    options_type = BACKBONES.options_type(backbone)
    if options_type is not None:
        try:  # typed, with suggestions for a typo, as in a config's teacher.encoder
            from_dict(options_type, chosen)
        except ConfigError as exc:
            raise ConfigError(f"--option: backbone '{backbone}': {exc}") from None
    return chosen


def _pipeline_of(config_file: str | Path) -> str:
    return str(read_yaml(config_file).get("pipeline", "scenes"))


def _model_record(ctx: RunContext, meta_path: Path) -> ModelRecord:
    """A probe-stage model record for one export, checked against the dataset."""
    meta = read_export_metadata(meta_path)
    check_installed(meta_path, meta.get("components"), meta["modality"], meta["backbone"])
    modality = meta["modality"]
    dataset = ctx.state.dataset
    available = dataset_modalities(ctx.state.dataset_source, ctx.config.data.options())
    if modality not in available:
        raise ConfigError(
            f"'{meta_path}': a {modality} encoder, but dataset '{ctx.config.data.name}' "
            f"has {', '.join(available)}; choose a dataset with --data"
        )
    expected = dataset.frontend_kwargs.get(modality, {})  # facts of the data (sample rate)
    if any(meta["frontend_options"].get(key) != value for key, value in expected.items()):
        raise ConfigError(
            f"'{meta_path}': the encoder's {modality} front end was "
            f"{meta['frontend_options']}, the dataset gives {expected}; its features "
            "would not mean the same: probe it on the data it was trained for"
        )
    if ctx.state.data_key is None:
        raise ValueError("probe targets are read once the dataset is prepared ('preprocess')")
    extra = meta.get("extra", {})
    role = extra.get("role", "student")
    digest = target_digest(meta, ctx.state.data_key)
    return ModelRecord(
        seed=int(extra.get("seed", 0)),
        modality=modality,
        method="teacher" if role == "teacher" else str(extra.get("method", meta["backbone"])),
        role=role,
        directory=str(meta_path.parent),
        encoder=meta["backbone"],
        checkpoint=str(meta_path),
        digest=digest,
        key=digest,
        hparams={},
    )
