"""The one runner: every command that trains, extracts or probes goes through :func:`execute`.

``xmodal run`` (:func:`run_pipeline`), ``xmodal data prepare`` (a pipeline's ``preprocess``
stage alone) and ``xmodal probe`` (:mod:`.probe_target`: ``preprocess``, the probe targets,
``probe`` and ``report``) differ only in their config and their stages; :func:`execute` gives
them one run directory, one lock, the launch guard, ``runtime.threads``, mixed precision and the
trackers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from xmodal.core.cache import write_text_atomic
from xmodal.core.config import dump_yaml, flat_hparams, load_config, read_yaml, to_dict
from xmodal.core.errors import ConfigError
from xmodal.core.lock import RunLock
from xmodal.core.registry import DATASETS, PIPELINES, STAGES
from xmodal.pipelines.config import RunConfig
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.dry_run import dry_run
from xmodal.pipelines.name_checks import (
    check_component_names,
    check_encoder_options,
    check_method_needs,
    check_text_probes,
)
from xmodal.pipelines.spec import PipelineSpec
from xmodal.training.distributed import create_accelerator

#: a stage as the runner calls it: a registered stage, or a command's own step
Stage = Callable[[RunContext], None]


@dataclass
class RunResult:
    """What a run left in its run directory.

    Attributes:
        run_dir: where every stage wrote its outputs.
        rows: one dict per (model, probe, metric, seed), as in ``results.json``.
        summary: rows aggregated over seeds, as in ``summary.json``.
    """

    run_dir: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]


def resolve_config(
    pipeline: str,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data_path: str | Path | None = None,
    stages: Sequence[str] | None = None,
) -> tuple[PipelineSpec, RunConfig]:
    """A pipeline's spec and its checked config.

    Library defaults <- the pipeline's shipped config <- ``config_file`` <- ``overrides``;
    ``data_path`` (``--data``) sets the selected dataset's ``path`` option last. The encoders
    that ``stages`` (default: all the pipeline's) will build are checked too (weights files,
    libraries).
    """
    spec: PipelineSpec = PIPELINES.get(pipeline)
    spec.check_stages()
    shipped = spec.config_path()
    base = read_yaml(shipped) if shipped else {}
    base.setdefault("pipeline", spec.name)
    config = load_config(RunConfig, config_file, list(overrides), base=base)
    check_component_names(config)
    if data_path is not None:
        key = DATASETS.options_key(config.data.name)
        if not hasattr(config.data.options(), "path"):
            raise ConfigError(
                f"--data: dataset '{config.data.name}' reads no file (it is generated)"
            )
        overrides = [*overrides, f"data.{key}.path={Path(data_path)}"]
        config = load_config(RunConfig, config_file, list(overrides), base=base)
        check_component_names(config)  # again: a manifest's columns are the modalities
    check_method_needs(config, spec)
    check_encoder_options(config, spec.stages if stages is None else stages)
    check_text_probes(config, spec)
    config.fill_defaults()
    return spec, config


def check_out(out: str | Path | None) -> None:
    """Refuse an empty ``--out`` (it would mean the current folder), before any work."""
    if out is not None and not str(out).strip():
        raise ConfigError("--out is empty: give a run directory, e.g. --out runs/scenes")


def execute(
    name: str,
    config: RunConfig,
    run_dir: Path,
    stages: Sequence[Stage],
    *,
    title: str,
    console: Console | None = None,
) -> RunResult:
    """Run ``stages`` in order inside ``run_dir``: the entry of every command that does work.

    In order: ``runtime.threads``; the Accelerator (``runtime.cpu``, ``runtime.mixed_precision``,
    the trackers of ``runtime.log_with`` under ``<run_dir>/logs``, and the launch guard: a
    process that joined another job than the one it was started in stops); the run lock,
    which the main process holds for the whole job (:class:`~xmodal.core.lock.RunLock`: a
    second job into ``run_dir`` stops with one line naming the holder); the trackers' project
    ``name`` with the flat config as hyperparameters; the stages; last ``config.yaml``, so it
    never describes results that were not written.

    Args:
        name: the pipeline's name, or the command's (``probe``): the trackers' project.
        config: the checked config (see :func:`resolve_config`); stages may fill it in.
        run_dir: where the stages write.
        stages: called as ``stage(ctx)`` in order.
        title: the command as the first console line names it (``xmodal run scenes``).
        console: where the main process prints.
    """
    threads_before = torch.get_num_threads()  # restored after: a library call leaves no trace
    if config.runtime.threads > 0:
        torch.set_num_threads(config.runtime.threads)
    try:
        return _execute(name, config, run_dir, stages, title, console)
    finally:
        torch.set_num_threads(threads_before)


def _execute(
    name: str,
    config: RunConfig,
    run_dir: Path,
    stages: Sequence[Stage],
    title: str,
    console: Console | None,
) -> RunResult:
    """The job of :func:`execute` once the thread count is set."""
    accelerator = create_accelerator(
        cpu=config.runtime.cpu,
        mixed_precision=config.runtime.mixed_precision,
        log_with=config.runtime.log_with or None,
        project_dir=str(run_dir / "logs"),
    )
    with RunLock(run_dir) if accelerator.is_main_process else nullcontext():
        accelerator.wait_for_everyone()  # the others start once the main process holds run_dir
        if config.runtime.log_with:
            accelerator.init_trackers(name, config=flat_hparams(to_dict(config)))
        ctx = RunContext(
            config=config, run_dir=run_dir, accelerator=accelerator, console=console or Console()
        )
        ctx.say(
            f"[bold]{title}[/bold] -> {run_dir} ({accelerator.num_processes} process(es) on "
            f"{accelerator.device}, data: {config.data.name})"
        )
        try:
            for stage in stages:
                stage(ctx)
        finally:
            if config.runtime.log_with:
                accelerator.end_training()  # flush and close the trackers
        if accelerator.is_main_process:
            write_text_atomic(run_dir / "config.yaml", dump_yaml(config))
    return RunResult(run_dir, ctx.state.rows, ctx.state.summary)


def run_pipeline(
    pipeline: str,
    out: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    console: Console | None = None,
    data_path: str | Path | None = None,
    stages: list[str] | None = None,
) -> RunResult:
    """Run ``pipeline`` end to end through :func:`execute`; finished units in ``out`` are reused.

    Args:
        pipeline: a registered pipeline's name (``scenes``).
        out: run directory (default ``runs/<pipeline>``).
        config_file: YAML overriding the pipeline's defaults.
        overrides: ``KEY=VALUE`` strings, e.g. ``["distill.optim.epochs=2"]``.
        console: where the main process prints.
        data_path: the dataset file for datasets that read one (``--data``).
        stages: run only these of the pipeline's stages (e.g. ``["preprocess"]``).
    """
    check_out(out)
    spec, config = resolve_config(pipeline, config_file, overrides, data_path, stages)
    chosen = spec.stages if stages is None else [s for s in spec.stages if s in stages]
    run_dir = Path(out) if out is not None else Path("runs") / spec.name
    if os.environ.get("RANK", "0") == "0":  # once per job (a launcher's parent ran it too)
        dry_run(config, chosen, run_dir)
    return execute(
        spec.name,
        config,
        run_dir,
        [STAGES.get(stage) for stage in chosen],
        title=f"xmodal run {spec.name}",
        console=console,
    )
