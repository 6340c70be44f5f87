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
    ctx.console.print(results_table(summary, ctx.config.pipeline, len(ctx.config.seeds)))
    ctx.say(f"results: {ctx.run_dir / 'results.json'} (rows), {ctx.run_dir / 'summary.csv'} "
            f"(over seeds), {ctx.run_dir}/*.svg (charts)")


def results_table(summary: list[dict[str, Any]], title: str, seeds: int) -> Table:
    """Rows (modality, method); a column per probe metric (mean ± std) plus gap closed."""
    metrics = sorted({(e["probe"], e["metric"]) for e in summary})
    table = Table(title=f"{title}: test metrics (%), mean ± std over {seeds} seed(s)")
    table.add_column("modality")
    table.add_column("method")
    for probe, metric in metrics:
        table.add_column(f"{probe} {metric.replace('_', ' ')}", justify="right")
    table.add_column("gap closed", justify="right")
    index = {(e["modality"], e["method"], e["probe"], e["metric"]): e for e in summary}
    for modality, method in dict.fromkeys((e["modality"], e["method"]) for e in summary):
        cells = []
        for probe, metric in metrics:
            e = index.get((modality, method, probe, metric))
            cells.append("-" if e is None else f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f}")
        first = index.get((modality, method, *metrics[0])) if metrics else None
        gap = first.get("gap_closed") if first else None
        cells.append("-" if gap is None else f"{100 * gap:.0f}%")
        table.add_row(modality, method, *cells)
    return table

