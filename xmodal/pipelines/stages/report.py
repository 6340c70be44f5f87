"""Stage ``report``: results table on the console, ``results.json``/``results.csv`` (one row
per model x probe x metric x seed), ``summary.json``/``summary.csv`` (over seeds) and one SVG
bar chart per probe metric."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from xmodal.core.config import to_dict
from xmodal.core.registries import STAGES
from xmodal.evaluation.plot import write_bar_chart
from xmodal.evaluation.summary import gap_closed_per_seed, summarise
from xmodal.core.records import write_csv, write_json_atomic
from xmodal.pipelines.context import RunContext


@STAGES.register("report", "write results.json/csv and print the results table")
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
    for probe, metric in sorted({(e["probe"], e["metric"]) for e in summary}):
        write_bar_chart(summary, ctx.run_dir / f"{probe}-{metric}.svg", probe=probe, metric=metric,
                        title=f"{ctx.config.pipeline}: {probe} probe, test {metric.replace('_', ' ')} (%)")
    for table in results_tables(summary, ctx.config.pipeline, len(ctx.config.seeds)):
        ctx.console.print(table)
    ctx.say(f"results: {ctx.run_dir / 'results.json'} (rows), {ctx.run_dir / 'summary.csv'} "
            f"(over seeds), {ctx.run_dir}/*.svg (charts)")


def results_tables(summary: list[dict[str, Any]], title: str, seeds: int) -> list[Table]:
    """One table per probe (in run order): rows (modality, method), a column per metric (mean,
    ± std when several seeds) and the gap closed on the probe's first (headline) metric."""
    index = {(e["modality"], e["method"], e["probe"], e["metric"]): e for e in summary}
    models = list(dict.fromkeys((e["modality"], e["method"]) for e in summary))
    tables = []
    for probe in dict.fromkeys(e["probe"] for e in summary):
        metrics = list(dict.fromkeys(e["metric"] for e in summary if e["probe"] == probe))
        table = Table(title=f"{title}: {probe} probe, test metrics (%)"
                            + (f", mean ± std over {seeds} seeds" if seeds > 1 else ""))
        table.add_column("modality")
        table.add_column("method")
        for metric in metrics:
            table.add_column(metric.replace("_", " "), justify="right")
        table.add_column(f"gap closed ({metrics[0].replace('_', ' ')})", justify="right")
        for modality, method in models:
            entries = [index.get((modality, method, probe, metric)) for metric in metrics]
            if all(e is None for e in entries):
                continue
            cells = ["-" if e is None else f"{100 * e['mean']:.1f}"
                     + (f" ± {100 * e['std']:.1f}" if seeds > 1 else "") for e in entries]
            gap = entries[0].get("gap_closed") if entries[0] else None
            cells.append("-" if gap is None else f"{100 * gap:.0f}%")
            table.add_row(modality, method, *cells)
        tables.append(table)
    return tables
