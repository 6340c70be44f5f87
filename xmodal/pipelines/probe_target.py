"""``xmodal probe``: run the probes on encoders that come from outside a pipeline run.

A target is an exported encoder (its directory, ``encoder.json`` or ``encoder.safetensors``),
a run directory (every encoder it exported: teacher and students), or a registered backbone
name (built with its pretrained weights and options and exported first, so every target is
probed the same way). The dataset is prepared as in a run, then the pipeline's own ``probe`` and
``report`` stages run on the targets, so rows, caches and the report match a run's.

Feature caches are keyed by :func:`target_digest`: the SHA-256 of the weights file, the
modality, the front end's options and the dataset's cache key (dataset, options such as image
size or depth encoding). Each cache file holds one tensor per split; the probe units are keyed
by the same digest, so new weights mean new features and new probe results.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console

import xmodal
from xmodal.core.config import fingerprint, from_dict, parse_override, read_yaml
from xmodal.core.errors import ConfigError
from xmodal.core.lock import RunLock
from xmodal.core.registry import BACKBONES, DATASETS, PROBES, STAGES
from xmodal.data.source import dataset_modalities
from xmodal.encoders.base import create_encoder
from xmodal.encoders.export import (
    META_FILE,
    WEIGHTS_FILE,
    export_encoder,
    read_export_metadata,
)
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.runner import RunResult, resolve_config
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
            "frontend": meta["frontend_kwargs"],
            "data": data_key,
        }
    )


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
    """Probe ``target`` on a pipeline's dataset; returns the rows and summary, and writes
    ``results.json``, ``summary.json`` and ``report.md`` into ``out``.

    Args:
        data: a registered dataset name (``scenes``) or the dataset's file (``.mat`` for NYU).
        probes: registered probes (default: the config's ``probe.probes``; pair probes such as
            ``retrieval`` only when a teacher is among the targets).
        pipeline, config_file: where the dataset and probe settings come from (default: the
            run that holds the target, else the ``scenes`` pipeline).
        modality, pretrained: for a backbone-name target: its input modality (default: the
            config's teacher modality) and its weights (the option its factory names in
            ``weights_option``: ``pretrained`` for torchvision nets and open_clip, ``weights`` for
            timm, ``model`` for hf; default: the factory's ``probe_weights``, ``imagenet`` for
            torchvision nets, else the option's own default).
        options: the backbone's other options as ``KEY=VALUE`` (YAML values; dotted keys
            reach into dict options), e.g. ``model=vit_small_patch14_dinov2.lvd142m``.
    """
    console = console or Console()
    path = Path(target)
    backbone = None
    if not path.exists():
        if target not in BACKBONES:
            raise ConfigError(
                f"probe target '{target}' is not a path (exported encoder or run "
                f"directory) nor a registered backbone ({', '.join(BACKBONES.names())})"
            )
        backbone = target
        backbone_options = _backbone_options(backbone, pretrained, options)
    run_config = None if backbone else enclosing_run_config(path)
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
    spec, config = resolve_config(
        spec_name, config_file, overrides, data_path, stages=["preprocess", "probe", "report"]
    )
    for probe_name in probes or []:
        PROBES.get(probe_name)  # a typo fails before any work
    accelerator = Accelerator(
        cpu=config.runtime.cpu, mixed_precision=config.runtime.mixed_precision
    )
    name = backbone or (path.parent.name if path.is_file() else path.name) or "target"
    run_dir = Path(out) if out is not None else Path("runs") / f"probe-{name}"
    # the main process holds run_dir as `xmodal run` does: a second job into it stops at once
    with RunLock(run_dir) if accelerator.is_main_process else nullcontext():
        accelerator.wait_for_everyone()
        ctx = RunContext(config=config, run_dir=run_dir, accelerator=accelerator, console=console)
        ctx.say(f"[bold]xmodal probe {target}[/bold] -> {run_dir} (data: {config.data.name})")
        STAGES.get("preprocess")(ctx)
        dataset = ctx.state.dataset
        if backbone:
            modality = modality or config.teacher.modality
            encoder = create_encoder(
                backbone, modality, dataset.frontend_kwargs.get(modality, {}), **backbone_options
            )
            exports = [
                export_encoder(
                    encoder,
                    run_dir / "probe-targets" / backbone,
                    backbone,
                    backbone_options,
                    dataset.frontend_kwargs.get(modality, {}),
                    xmodal.__version__,
                    extra={"method": backbone, "role": "pretrained"},
                )
            ]
        else:
            exports = find_exports(path)
        models = [_model_record(ctx, meta_path) for meta_path in exports]
        has_teacher = any(m.role == "teacher" for m in models)
        chosen = probes or [
            p
            for p in config.probe.probes
            if has_teacher or not getattr(PROBES.get(p), "consumes_pairs", False)
        ]
        config.probe.probes = chosen
        ctx.state.models = models
        STAGES.get("probe")(ctx)
        STAGES.get("report")(ctx)
    return RunResult(run_dir, ctx.state.rows, ctx.state.summary)


def _backbone_options(
    backbone: str, pretrained: str | None, options: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """The options of a backbone-name target: ``--option KEY=VALUE``s, then its weights, checked
    against the backbone's options like ``teacher.encoder.kwargs``.
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
        try:  # typed, with suggestions for a typo, as teacher.encoder.kwargs
            from_dict(options_type, chosen)
        except ConfigError as exc:
            raise ConfigError(f"--option: backbone '{backbone}': {exc}") from None
    return chosen


def _pipeline_of(config_file: str | Path) -> str:
    return str(read_yaml(config_file).get("pipeline", "scenes"))


def _model_record(ctx: RunContext, meta_path: Path) -> ModelRecord:
    """A probe-stage model record for one export, checked against the dataset."""
    meta = read_export_metadata(meta_path)
    modality = meta["modality"]
    dataset = ctx.state.dataset
    available = dataset_modalities(ctx.state.dataset_source, ctx.config.data.options())
    if modality not in available:
        raise ConfigError(
            f"'{meta_path}': a {modality} encoder, but dataset '{ctx.config.data.name}' "
            f"has {', '.join(available)}; choose a dataset with --data"
        )
    expected = dataset.frontend_kwargs.get(modality, {})  # facts of the data (sample rate)
    if any(meta["frontend_kwargs"].get(key) != value for key, value in expected.items()):
        raise ConfigError(
            f"'{meta_path}': the encoder's {modality} front end was "
            f"{meta['frontend_kwargs']}, the dataset gives {expected}; its features "
            "would not mean the same: probe it on the data it was trained for"
        )
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
