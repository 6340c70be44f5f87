"""Summaries over seeds, the gap-closed ratio, the results figure and tables."""

from __future__ import annotations

import json
import statistics

import pytest

from xmodal.evaluation.figures import probe_results_figure
from xmodal.evaluation.summary import gap_closed_per_seed, summarise


def _rows():
    values = {"none": [0.30, 0.34], "supervised": [0.80, 0.78], "wcord": [0.60, 0.70]}
    return [
        {
            "modality": "depth",
            "method": m,
            "probe": "linear",
            "metric": "accuracy",
            "value": v,
            "seed": s,
        }
        for m, vs in values.items()
        for s, v in enumerate(vs)
    ]


def test_mean_std_and_gap_closed():
    summary = {e["method"]: e for e in summarise(_rows())}
    assert summary["wcord"]["mean"] == pytest.approx(0.65)
    assert summary["wcord"]["std"] == pytest.approx(statistics.stdev([0.60, 0.70]))
    assert summary["wcord"]["n"] == 2
    assert summary["wcord"]["gap_closed"] == pytest.approx((0.65 - 0.32) / (0.79 - 0.32))
    assert summary["none"]["gap_closed"] == pytest.approx(0.0)
    assert summary["supervised"]["gap_closed"] == pytest.approx(1.0)


def test_gap_closed_per_seed_uses_each_seeds_floor():
    gaps = gap_closed_per_seed(_rows(), "depth", "wcord")
    assert gaps[0] == pytest.approx((0.60 - 0.30) / (0.80 - 0.30))
    assert gaps[1] == pytest.approx((0.70 - 0.34) / (0.78 - 0.34))


def test_gap_is_undefined_without_a_positive_gap():
    rows = [r | {"value": 0.5} for r in _rows()]
    assert all(e["gap_closed"] is None for e in summarise(rows))


def test_results_figure_bars_and_error_bars_match_the_summary(tmp_path):
    from matplotlib.container import ErrorbarContainer

    path = tmp_path / "results.png"
    fig = probe_results_figure(summarise(_rows()), {"linear": "accuracy"}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([32.0, 79.0, 65.0])  # in %
    spans = [
        c.lines[2][0].get_segments()[0][:, 1]
        for c in ax.containers
        if isinstance(c, ErrorbarContainer)
    ]
    assert spans[0] == pytest.approx(
        [32.0 - 100 * statistics.stdev([0.30, 0.34]), 32.0 + 100 * statistics.stdev([0.30, 0.34])]
    )


def test_results_tables_one_per_probe_with_the_headline_gap():
    from rich.console import Console

    from xmodal.pipelines.stages.report import results_tables

    rows = []
    for method, miou, acc in (
        ("none", 0.10, 0.30),
        ("supervised", 0.30, 0.70),
        ("wcord", 0.25, 0.60),
    ):
        for seed in (0, 1):
            rows.append(
                {
                    "modality": "hha",
                    "method": method,
                    "probe": "linear",
                    "metric": "accuracy",
                    "value": acc + 0.01 * seed,
                    "seed": seed,
                }
            )
            for metric, value in (("mean_iou", miou), ("pixel_accuracy", 0.5)):
                rows.append(
                    {
                        "modality": "hha",
                        "method": method,
                        "probe": "seg40",
                        "metric": metric,
                        "value": value + 0.01 * seed,
                        "seed": seed,
                    }
                )
    tables = results_tables(summarise(rows), "nyu-depth", seeds=2)
    assert [t.title.split(": ")[1].split(" probe")[0] for t in tables] == ["linear", "seg40"]
    seg = tables[1]
    assert [c.header for c in seg.columns] == [
        "modality",
        "method",
        "mean iou",
        "pixel accuracy",
        "gap closed (mean iou)",
    ]
    console = Console(width=200, record=True)
    console.print(seg)
    text = console.export_text()
    assert "75%" in text  # wcord: (0.25 - 0.10) / (0.30 - 0.10) on mIoU, not pixel accuracy
    assert "25.5 ± 0.7" in text  # mean and sample std of 0.25, 0.26


def test_report_tables_show_recalls_in_percent_and_ranks_as_ranks():
    from xmodal.evaluation.report import markdown_table, probe_tables

    rows = [
        {
            "modality": "depth",
            "method": "wcord",
            "probe": "retrieval",
            "metric": metric,
            "value": value,
            "seed": seed,
        }
        for seed, (recall, rank) in enumerate([(0.25, 12.0), (0.35, 14.0)])
        for metric, value in (("s2t_recall@1", recall), ("s2t_median_rank", rank))
    ]
    (table,) = probe_tables(summarise(rows), seeds=2)
    assert table["columns"] == [
        "modality",
        "method",
        "s→t R@1",
        "s→t median rank",
        "gap closed (s→t R@1)",
    ]
    assert table["rows"] == [["depth", "wcord", "30.0 ± 7.1", "13 ± 1", "-"]]
    text = markdown_table(table["columns"], table["rows"]).splitlines()
    assert text[1] == "|:---|:---|---:|---:|---:|" and text[2].startswith("| depth | wcord | 30.0")


def test_console_tables_drop_columns_to_fit_80_columns_instead_of_cutting_text():
    from rich.console import Console

    from xmodal.pipelines.stages.report import results_tables

    metrics = [f"{d}_recall@{k}" for d in ("s2t", "t2s") for k in (1, 5, 10)]
    metrics += ["s2t_median_rank", "t2s_median_rank"]
    rows = [
        {
            "modality": modality,
            "method": method,
            "probe": "retrieval",
            "metric": metric,
            "value": 0.123 if "recall" in metric else 17.0,
            "seed": seed,
        }
        for modality in ("depth", "audio")
        for method in ("none", "supervised", "wcord-global")
        for metric in metrics
        for seed in (0, 1, 2)
    ]
    wide, narrow = (
        results_tables(summarise(rows), "scenes", seeds=3, width=w)[0] for w in (None, 80)
    )
    assert len(wide.columns) == 2 + len(metrics) + 1
    headers = [c.header for c in narrow.columns]
    assert headers[:3] == ["modality", "method", "s→t R@1"] and headers[-1].startswith("gap closed")
    assert len(headers) < len(wide.columns) and "more column(s) in report.md" in narrow.caption
    console = Console(width=80, record=True)
    console.print(narrow)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "wcord-global" in text and "12.3 ± 0.0" in text


def _unit(run, name, modality, method, seed, history, role="student"):
    unit = run / name
    unit.mkdir(parents=True)
    (unit / "encoder.json").write_text(
        json.dumps({"modality": modality, "extra": {"role": role, "method": method, "seed": seed}})
    )
    (unit / "history.json").write_text(json.dumps(history))


def test_report_shows_each_models_final_spread_and_tolerates_old_histories(tmp_path):
    from xmodal.evaluation.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(
        json.dumps({"config": {"seeds": [0, 1]}, "summary": summarise(_rows())})
    )
    old = [{"loss": 1.0, "lr": 0.1, "epoch": 1}]  # a run from before spread was logged
    _unit(run, "teacher", "rgb", "supervised", 0, old, role="teacher")
    for seed, (rank, cosine) in enumerate([(3.0, 0.70), (5.0, 0.50)]):
        _unit(
            run,
            f"wcord-{seed}",
            "depth",
            "wcord",
            seed,
            [
                {"loss": 2.0, "lr": 0.1, "epoch": 1, "spread_rank": 20.0, "spread_cosine": 0.1},
                {"loss": 1.5, "lr": 0.0, "epoch": 2, "spread_rank": rank, "spread_cosine": cosine},
            ],
        )
    report = (write_report(run)).read_text()
    assert "### Embedding spread" in report
    assert "| depth | wcord | 4.0 ± 1.4 | 0.60 ± 0.14 | 2 |" in report  # mean ± std of seeds
    assert "| rgb | teacher |" not in report  # no spread logged: no row
    saved = json.loads((run / "report" / "spread.json").read_text())
    assert [(u["seed"], u["epoch"], u["spread_rank"]) for u in saved] == [(0, 2, 3.0), (1, 2, 5.0)]
    assert "(report/embedding-spread.png)" in report and "(report/training-curves.png)" in report
    for unit in ("wcord-0", "wcord-1"):  # an old run throughout: no section, no figure
        (run / unit / "history.json").write_text(json.dumps(old))
    report = (write_report(run)).read_text()
    assert "Embedding spread" not in report and "embedding-spread" not in report
    assert not (run / "report" / "spread.json").exists()


def test_spread_curves_are_drawn_apart_from_the_loss_terms(tmp_path):
    from xmodal.evaluation.figures import spread_curves_figure, training_curves_figure

    histories = {
        "depth wcord": [
            {"loss": 2.0, "lr": 0.1, "epoch": e, "spread_rank": 10.0 / e, "spread_cosine": 0.2 * e}
            for e in (1, 2, 3)
        ],
        "rgb teacher": [{"loss": 1.0, "lr": 0.1, "epoch": 1}],
    }
    curves = training_curves_figure(histories, tmp_path / "curves.png")
    assert [line.get_label() for line in curves.axes[0].lines] == ["loss"]
    fig = spread_curves_figure(histories, tmp_path / "spread.png")
    rank, cosine = fig.axes[:2]
    assert [line.get_label() for line in rank.lines] == ["depth wcord"]
    assert list(rank.lines[0].get_ydata()) == pytest.approx([10.0, 5.0, 10 / 3])
    assert list(cosine.lines[0].get_ydata()) == pytest.approx([0.2, 0.4, 0.6])
