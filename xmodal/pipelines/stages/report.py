"""Stage ``report``: the results written, summarised and printed.

Results tables on the console, ``results.json``/``results.csv`` (one row per model x probe x
metric x seed), ``summary.json``/``summary.csv`` (over seeds), and ``report.md`` with its PNG
figures (see :mod:`xmodal.evaluation.report`).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from xmodal.core.config import to_dict
from xmodal.core.records import write_csv, write_json_atomic
from xmodal.encoders.export import load_encoder
from xmodal.evaluation.features import extract_features
from xmodal.evaluation.report import probe_tables, write_embeddings, write_report
from xmodal.evaluation.summary import gap_closed_per_seed, summarise
from xmodal.pipelines.context import RunContext
from xmodal.pipelines.stages.probe import SPLITS, _frozen_entry
from xmodal.pipelines.state import stage


@stage(
    "report",
    "write results.json/csv and report.md with figures; print the tables",
    needs=("rows",),
    produces=("summary",),
)
def report(ctx: RunContext) -> None:
    """Summarise ``ctx.state.rows`` over seeds; the main process logs and writes the results."""
    rows: list[dict[str, Any]] = ctx.state.rows
    summary = summarise(rows)
    ctx.state.summary = summary
    if not ctx.accelerator.is_main_process:
        return
    if ctx.accelerator.trackers:
        ctx.accelerator.log(
            {
                "/".join(
                    (
                        "probe",
                        r["modality"],
                        r["method"],
                        r["probe"],
                        r["metric"],
                        f"seed{r['seed']}",
                    )
                ): r["value"]
                for r in rows
            }
        )
    write_json_atomic(ctx.run_dir / "results.json", rows)
    gaps = {
        f"{e['modality']}/{e['method']}/{e['probe']}/{e['metric']}": gap_closed_per_seed(
            rows, e["modality"], e["method"], e["probe"], e["metric"]
        )
        for e in summary
        if e["gap_closed"] is not None
    }
    skipped = ctx.state.dataset.skipped_rows if ctx.state.dataset is not None else []
    write_json_atomic(
        ctx.run_dir / "summary.json",
        {
            "config": to_dict(ctx.config),
            "summary": summary,
            "gap_closed_per_seed": gaps,
            "data": {"skipped_rows": len(skipped), "skipped_row_numbers": skipped},
        },
    )
    write_csv(ctx.run_dir / "results.csv", rows)
    write_csv(ctx.run_dir / "summary.csv", summary)
    _write_test_embeddings(ctx)
    report_file = write_report(ctx.run_dir)
    for table in results_tables(
        summary, ctx.config.pipeline, len(ctx.config.seeds), width=ctx.console.width
    ):
        ctx.console.print(table)
    ctx.say(
        f"results: {ctx.run_dir / 'results.json'} (rows), {ctx.run_dir / 'summary.csv'} "
        f"(over seeds), {report_file} (report with figures)"
    )


def _write_test_embeddings(ctx: RunContext) -> None:
    """The first seed's test embeddings of every encoder, reduced to 2-D for the report."""
    models = ctx.state.models
    if not models or ctx.state.dataset is None:
        return
    dataset = ctx.state.dataset
    test = dataset.splits["test"]
    seed = min(m.seed for m in models)
    panels = []

    def extract(encoder: Any, split: str) -> Any:
        return extract_features(
            encoder,
            dataset.splits[split],
            device=ctx.accelerator.device,
            channels_last=ctx.config.runtime.channels_last,
        )

    for model in (m for m in models if m.seed == seed):
        if set(SPLITS) <= set(dataset.splits):  # the probe stage's cache (filled by it, usually)
            feats = _frozen_entry(ctx, model, "", {}, extract, everywhere=False).value["test"]
        else:  # e.g. cifar100 (train/test only, no probe stage): the test split alone
            feats = extract(load_encoder(model.checkpoint), "test")
        panels.append(
            {
                "title": f"{model.modality} {model.method} (seed {seed})",
                "features": feats.numpy(),
                "labels": test.column("label").tolist() if "label" in test else [-1] * len(test),
            }
        )  # -1: no labels
    write_embeddings(ctx.run_dir, panels, dataset.class_names)


def results_tables(
    summary: list[dict[str, Any]], title: str, seeds: int, width: int | None = None
) -> list[Table]:
    """The console version of :func:`xmodal.evaluation.report.probe_tables`.

    With ``width`` (the terminal's columns), metric columns that do not fit are left out, last
    first, rather than squeezed until names and numbers are cut; ``report.md`` keeps them all.
    """
    tables = []
    for spec in probe_tables(summary, seeds):
        keep = _columns_that_fit(spec["columns"], spec["rows"], width)
        dropped = len(spec["columns"]) - len(keep)
        table = Table(
            title=f"{title}: {spec['probe']} probe, test metrics"
            + (f", mean ± std over {seeds} seeds" if seeds > 1 else ""),
            caption=f"{dropped} more column(s) in report.md" if dropped else None,
        )
        for i in keep:  # cells never wrap or shrink; long headers wrap at their spaces
            table.add_column(
                spec["columns"][i],
                justify="left" if i < 2 else "right",
                min_width=max([len(r[i]) for r in spec["rows"]] + [1]),
            )
        for row in spec["rows"]:
            table.add_row(*(row[i] for i in keep))
        tables.append(table)
    return tables


def _columns_that_fit(columns: list[str], rows: list[list[str]], width: int | None) -> list[int]:
    """Indices of the columns to show.

    Always the two names, the headline metric and the last (gap closed); the other metrics in
    order while the table fits in ``width``.
    """

    def need(i: int) -> int:  # widest cell or header word, plus rich's padding and border
        words = [len(w) for w in columns[i].split()] + [len(r[i]) for r in rows]
        return max(words) + 3

    always = sorted({0, 1, min(2, len(columns) - 1), len(columns) - 1})
    if width is None:
        return list(range(len(columns)))
    used = 1 + sum(need(i) for i in always)
    keep = set(always)
    for i in range(len(columns)):
        if i not in keep and used + need(i) <= width:
            keep.add(i)
            used += need(i)
        elif i not in keep:
            break  # keep metrics contiguous: drop from the first that does not fit onwards
    return sorted(keep)
