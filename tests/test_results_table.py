"""benchmarks/results_table.py: the per-seed differences that decide whether a lead is noise."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "results_table.py"


@pytest.fixture(scope="module")
def results_table():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(method: str, seed: int, value: float, modality: str = "depth", probe: str = "linear"):
    return {
        "modality": modality,
        "method": method,
        "role": "student",
        "probe": probe,
        "metric": "accuracy",
        "value": value,
        "seed": seed,
    }


def test_differences_pair_seeds_and_skip_unshared_ones(results_table):
    rows = [
        *(_row("crd", s, v) for s, v in ((0, 0.80), (1, 0.70), (2, 0.75), (3, 0.90))),
        *(_row("wcord", s, v) for s, v in ((0, 0.81), (1, 0.73), (2, 0.74))),
        _row("wcord", 0, 0.10, probe="knn"),  # another probe: not read
        _row("wcord", 5, 0.99),  # a seed crd lacks: not paired
    ]
    text = results_table.differences(rows, "crd", None, None)
    # per-seed gaps +1, +3, -1 points: mean +1.0, sample std 2.0, over the 3 shared seeds
    assert text.splitlines() == [
        "| method - crd | depth |",
        "|---|---:|",
        "| wcord | +1.0 ± 2.0 (n=3) |",
    ]


def test_main_appends_the_differences_table(results_table, tmp_path, capsys):
    rows = [_row(m, s, v + s / 100) for m, v in (("none", 0.3), ("crd", 0.6)) for s in (0, 1)]
    rows += [_row("supervised", s, 0.9) for s in (0, 1)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    text = results_table.main([str(path), "--against", "none", "--out", str(tmp_path / "t.md")])
    assert "| crd | +30.0 ± 0.0 (n=2) |" in text
    assert "| supervised | +59.5 ± 0.7 (n=2) |" in text
    assert (tmp_path / "t.md").read_text() == text + "\n"


def _record(run: Path, seed: int, unit: str, probe: str, record: dict) -> None:
    folder = run / "probe" / f"seed{seed}" / unit / probe
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"key": "k", "inputs": {}, "record": record}))


def test_a_run_directory_adds_the_probe_records_of_seeds_its_results_lack(results_table, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([_row("wcord-global", 0, 0.80)]))
    _record(run, 0, "depth-wcord-global", "linear", {"accuracy": 0.10, "l2": 0.01})  # older
    _record(run, 1, "depth-wcord-global", "linear", {"accuracy": 0.70, "l2": 0.01, "files": {}})
    _record(run, 1, "rgb-teacher", "knn", {"accuracy": 0.9, "k": 20, "temperature": 0.07})
    rows = results_table.merged_rows([f"{run}::wcord (mine)"])
    got = {(r["method"], r["probe"], r["metric"], r["seed"]): r["value"] for r in rows}
    assert got == {
        ("wcord (mine)", "linear", "accuracy", 0): 0.80,  # results.json wins over a record
        ("wcord (mine)", "linear", "accuracy", 1): 0.70,
        ("teacher", "knn", "accuracy", 1): 0.9,  # settings (k, l2, temperature) are no metrics
    }
    assert {r["role"] for r in rows if r["method"] == "teacher"} == {"teacher"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no results or probe records"):
        results_table.merged_rows([str(tmp_path / "empty")])
