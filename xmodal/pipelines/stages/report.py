"""Stage ``report``: results table on the console, ``results.json``/``results.csv`` (one row
per model x probe x metric x seed), ``summary.json``/``summary.csv`` (over seeds), and
``report.md`` with its PNG figures (see :mod:`xmodal.evaluation.report`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from xmodal.core.config import to_dict
from xmodal.core.records import write_csv, write_json_atomic
from xmodal.core.registries import STAGES
from xmodal.evaluation.features import extract_features
from xmodal.evaluation.report import probe_tables, write_embeddings, write_report
from xmodal.evaluation.summary import gap_closed_per_seed, summarise
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.probe import _frozen_outputs


@STAGES.register("report", "write results.json/csv and report.md with figures; print the tables")
def report(ctx: RunContext) -> None:
    rows: list[dict[str, Any]] = ctx.state.get("rows", [])
    summary = summarise(rows)
    ctx.state["summary"] = summary
    if not ctx.accelerator.is_main_process:
        return
    if ctx.accelerator.trackers:
        ctx.accelerator.log({"/".join(("probe", r["modality"], r["method"], r["probe"], r["metric"],
                                       f"seed{r['seed']}")): r["value"] for r in rows})
    write_json_atomic(ctx.run_dir / "results.json", rows)
    gaps = {f"{e['modality']}/{e['method']}/{e['probe']}/{e['metric']}":
            gap_closed_per_seed(rows, e["modality"], e["method"], e["probe"], e["metric"])
            for e in summary if e["gap_closed"] is not None}
    write_json_atomic(ctx.run_dir / "summary.json", {"config": to_dict(ctx.config), "summary": summary,
                                                     "gap_closed_per_seed": gaps})
    write_csv(ctx.run_dir / "results.csv", rows)
    write_csv(ctx.run_dir / "summary.csv", summary)
    _write_test_embeddings(ctx)
    report_file = write_report(ctx.run_dir)
    for table in results_tables(summary, ctx.config.pipeline, len(ctx.config.seeds)):
        ctx.console.print(table)
    ctx.say(f"results: {ctx.run_dir / 'results.json'} (rows), {ctx.run_dir / 'summary.csv'} "
            f"(over seeds), {report_file} (report with figures)")


def _write_test_embeddings(ctx: RunContext) -> None:
    """The first seed's test embeddings of every encoder, reduced to 2-D for the report."""
    models = ctx.state.get("models", [])
    if not models or "dataset" not in ctx.state:
        return
    dataset = ctx.state["dataset"]
    test = dataset.splits["test"]
    seed = min(m["seed"] for m in models)
    panels = []
    for model in (m for m in models if m["seed"] == seed):
        feats = _frozen_outputs(ctx, model, "", {}, lambda enc, split: extract_features(
            enc, dataset.splits[split], device=ctx.accelerator.device))
        panels.append({"title": f"{model['modality']} {model['method']} (seed {seed})",
                       "features": feats["test"].numpy(), "labels": test.tensors["label"].tolist()})
    write_embeddings(ctx.run_dir, panels, dataset.class_names)


def results_tables(summary: list[dict[str, Any]], title: str, seeds: int) -> list[Table]:
    """The console version of :func:`xmodal.evaluation.report.probe_tables`."""
    tables = []
    for spec in probe_tables(summary, seeds):
        table = Table(title=f"{title}: {spec['probe']} probe, test metrics"
                            + (f", mean ± std over {seeds} seeds" if seeds > 1 else ""))
        for i, column in enumerate(spec["columns"]):
            table.add_column(column, justify="left" if i < 2 else "right")
        for row in spec["rows"]:
            table.add_row(*row)
        tables.append(table)
    return tables
