"""Stage ``preprocess``: build the dataset cache once (main process), then load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from xmodal.core.cache import file_digest
from xmodal.core.config import fingerprint, to_dict
from xmodal.core.errors import ConfigError
from xmodal.core.identity import components
from xmodal.core.registry import DATASETS
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.state import stage
from xmodal.training.progress import progress_bar


@stage(
    "preprocess",
    "generate or convert the dataset into the run's cache",
    produces=("dataset_source", "dataset", "data_key"),
)
def preprocess(ctx: RunContext) -> None:
    """Prepare (or reuse) the dataset's cache and load its splits into the state."""
    data_cfg = ctx.config.data
    source = DATASETS.get(data_cfg.name)()
    options = data_cfg.options()
    if options is None:
        raise ConfigError(
            f"dataset '{data_cfg.name}' has no options section 'data.{data_cfg.name}'"
        )
    path, ctx.state.data_key = prepared_cache(ctx, source, options, data_cfg.name)
    ctx.state.dataset = source.load(path)
    skipped = ctx.state.dataset.skipped_rows
    if skipped:
        shown = ", ".join(map(str, skipped[:20])) + (", ..." if len(skipped) > 20 else "")
        ctx.say(
            f"[yellow]{data_cfg.name}: {len(skipped)} bad row(s) left out (rows {shown}; "
            f"on_bad_sample=skip); 'xmodal data info' on the manifest lists why[/yellow]"
        )
    for note in ctx.state.dataset.notes:
        ctx.say(f"[yellow]{data_cfg.name}: warning: {escape(note)}[/yellow]")
    ctx.state.dataset_source = source


def prepared_cache(ctx: RunContext, source: Any, options: Any, name: str) -> tuple[Path, str]:
    """Build (main process) or reuse the cache ``data/<name>/data.h5`` of ``source``.

    Returns:
        The cache's path, and the data key that every later unit is keyed on (the data's
        settings, ``options``, the dataset's identity and the data's content).
    """
    inputs = {
        "dataset": ctx.config.data.name,
        "options": to_dict(options),
        "components": components(dataset=ctx.config.data.name),  # the code that prepares it
    }
    if hasattr(
        source, "fingerprint"
    ):  # file-backed sources: a replaced file must not hit the cache
        inputs["source"] = source.fingerprint(options)
    unit = ctx.unit("data", name, inputs=inputs)
    path = unit.directory / "data.h5"
    record = unit.record(files=[path.name])
    if record is None:
        if ctx.accelerator.is_main_process:
            unit.directory.mkdir(parents=True, exist_ok=True)
            with progress_bar(True, ctx.console) as bar:
                job = bar.add_task(f"preprocess {name}", total=None, info="")
                source.prepare(
                    options,
                    path,
                    progress=lambda done, total, **fields: bar.update(
                        job, completed=done, total=total, **fields
                    ),
                )
            unit.finish({"path": path.name}, files=[path.name])
        ctx.accelerator.wait_for_everyone()
        digest = file_digest(path)
    else:
        digest = record["files"][path.name]
        ctx.say(f"[dim]preprocess: cached {path}[/dim]")
    return path, fingerprint({"unit": unit.key, "digest": digest})
