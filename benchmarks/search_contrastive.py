"""Search on val for what WCoRD, CRD and InfoNCE each need, with the same budget of settings.

    python3 benchmarks/search_contrastive.py [--out runs/search] [--seeds 0]
        [--final-seeds 0 1 2] [--methods wcord crd infonce] [--wide] [--set KEY=VALUE ...]

The protocol is the ``scenes`` default (transfer teacher), with depth and audio students. One base
run trains the data, the teacher, ``none`` and ``supervised``; every setting then reuses them
(copied units) and trains one method. The search is coordinate-wise: starting from each
method's defaults, each factor in turn takes the value with the best **val** score (the linear
probe's val accuracy, mean over students and search seeds) while the others stay at the best
found so far. Test accuracy (linear, k-NN, segmentation) is read only for the chosen setting,
on ``--final-seeds``. Every run resumes through the run cache, so
an interrupted search continues where it stopped. Writes ``search.json``/``search.csv`` (every
setting with its val score) and ``chosen.json``/``chosen.csv`` (test mean +- std of the chosen
settings) under ``--out``, and prints both as tables.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.pipelines import run_pipeline  # noqa: E402

#: per method: its config section and, per factor, the values tried (the first is the default).
#: Each method gets the same budget: its defaults plus 3 single changes, the factors that an
#: earlier ablation or the paper audit named (docs/wcord-paper-audit.md); --wide adds more.
GRIDS: dict[str, tuple[str, dict[str, list[Any]]]] = {
    "wcord": (
        "wcord",
        {
            "estimator": ["nce", "infonce"],
            "lipschitz": ["spectral", "none"],
            "tau": [0.07, 0.2],
        },
    ),
    "crd": (
        "crd",
        {
            "tau": [0.07, 0.2],
            "momentum": [0.0, 0.5],
            "weight": [0.8, 2.0],
        },
    ),
    "infonce": (
        "infonce",
        {
            "init_temperature": [0.07, 0.2],
            "learn_temperature": [True, False],
            "weight": [1.0, 2.0],
        },
    ),
}
#: the factors --wide adds (14 settings in all for wcord, 11 for crd, 12 for infonce). wcord's
#: last two are CRD's negatives factors, added after its first wide pass (so its cache is reused).
WIDE: dict[str, dict[str, list[Any]]] = {
    "wcord": {
        "lambda_local": [0.1, 0.0, 0.5],
        "momentum": [0.0, 0.5],
        "lambda_global": [0.8, 2.0],
        "sinkhorn_eps": [0.05, 0.1],
        "embed_dim": [128, 64],
        "epochs": [20, 40],
        "negatives": ["uniform", "queue"],
        "num_negatives": [16384, 1024, 64],
    },
    "crd": {
        "num_negatives": [16384, 1024],
        "embed_dim": [128, 64],
        "negatives": ["uniform", "queue"],
        "epochs": [20, 40],
        "replacement": [False, True],
        "lr": [0.002, 0.004, 0.001],
    },
    "infonce": {
        "embed_dim": [128, 64],
        "epochs": [20, 40],
        "max_logit_scale": [100.0, 20.0],
        "batch_size": [64, 128],
        "lr": [0.002, 0.004, 0.001],
        "weight": [1.0, 2.0, 0.5],
    },
}
#: probes of the final (test) runs of the chosen settings; the search itself reads linear val
FINAL_PROBES = "probe.probes=[linear,knn,segmentation]"
#: factors that are training settings, not the method's options
OPTIM_FACTORS = ("epochs", "batch_size", "lr")


def overrides_for(method: str, setting: dict[str, Any]) -> list[str]:
    """``--set`` strings for one setting of ``method``."""
    section = GRIDS[method][0]
    out = []
    for factor, value in setting.items():
        key = (
            f"distill.optim.{factor}" if factor in OPTIM_FACTORS else f"distill.{section}.{factor}"
        )
        out.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return out


def setting_name(method: str, setting: dict[str, Any]) -> str:
    return method + "".join(f",{k}={v}" for k, v in sorted(setting.items()))


class Search:
    """Runs (or reuses) one setting at a time under ``out``, sharing the base run's units."""

    def __init__(self, out: Path, base_overrides: list[str], console: Console) -> None:
        self.out, self.base_overrides, self.console = out, base_overrides, console
        self.rows: list[dict[str, Any]] = []

    def base(self, seeds: list[int]) -> list[dict[str, Any]]:
        result = run_pipeline(
            "scenes",
            out=self.out / "base",
            console=self.console,
            overrides=[
                f"seeds=[{','.join(map(str, seeds))}]",
                "distill.methods=[none,supervised]",
                *self.base_overrides,
            ],
        )
        return result.rows

    def run(self, method: str, setting: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
        run_dir = self.out / "settings" / setting_name(method, setting).replace("/", "_")
        for shared in ("data", "teacher"):
            if (self.out / "base" / shared).exists():
                shutil.copytree(self.out / "base" / shared, run_dir / shared, dirs_exist_ok=True)
        result = run_pipeline(
            "scenes",
            out=run_dir,
            console=self.console,
            overrides=[
                f"seeds=[{','.join(map(str, seeds))}]",
                f"distill.methods=[{method}]",
                *self.base_overrides,
                *overrides_for(method, setting),
            ],
        )
        return [r for r in result.rows if r["method"] == method]

    def val_score(self, method: str, setting: dict[str, Any], seeds: list[int]) -> float:
        rows = [
            r
            for r in self.run(method, setting, seeds)
            if r["probe"] == "linear" and r["metric"] == "val_accuracy"
        ]
        score = statistics.fmean(r["value"] for r in rows)
        self.rows.append(
            {
                "method": method,
                "setting": setting_name(method, setting),
                "val_accuracy": score,
                **{f"val_{r['modality']}_seed{r['seed']}": r["value"] for r in rows},
            }
        )
        self.console.print(f"[bold]{setting_name(method, setting)}[/bold]: val {100 * score:.2f}")
        return score

    def coordinate_search(self, method: str, seeds: list[int]) -> dict[str, Any]:
        grid = GRIDS[method][1]
        best = {factor: values[0] for factor, values in grid.items()}
        best_score = self.val_score(method, {}, seeds)  # the defaults (= the first values)
        for factor, values in grid.items():
            for value in values[1:]:
                trial = {**best, factor: value}
                score = self.val_score(method, _changed(grid, trial), seeds)
                if score > best_score:
                    best, best_score = trial, score
        return _changed(grid, best)


def _changed(grid: dict[str, list[Any]], setting: dict[str, Any]) -> dict[str, Any]:
    """Only the factors that differ from the start values (so the defaults share one run)."""
    return {k: v for k, v in setting.items() if v != grid[k][0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/search")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="seeds the search scores on val"
    )
    parser.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--wide", action="store_true", help="add the WIDE factors to every grid")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if args.wide:
        for method, extra in WIDE.items():
            GRIDS[method][1].update(extra)
    console, out = Console(), Path(args.out)
    search = Search(
        out, ["runtime.threads=1", "distill.students=[depth,audio]", *args.overrides], console
    )
    search.base(sorted(set(args.seeds) | set(args.final_seeds)))
    chosen = {method: search.coordinate_search(method, args.seeds) for method in args.methods}
    write_json_atomic(out / "search.json", search.rows)
    write_csv(out / "search.csv", search.rows)

    final = []
    search.base_overrides.append(FINAL_PROBES)
    base_rows = search.base(args.final_seeds)
    for method in ("none", "supervised"):
        final += _test_rows(base_rows, method, {})
    for method, setting in chosen.items():
        final += _test_rows(search.run(method, setting, args.final_seeds), method, setting)
    write_json_atomic(out / "chosen.json", final)
    write_csv(out / "chosen.csv", final)
    _print(console, search.rows, final)
    return {"search": search.rows, "chosen": final}


def _test_rows(
    rows: list[dict[str, Any]], method: str, setting: dict[str, Any]
) -> list[dict[str, Any]]:
    """Mean and std over seeds of every probe metric of ``method``.

    One row per student, probe and metric.
    """
    out = []
    picked = [r for r in rows if r["method"] == method]
    for key in sorted({(r["modality"], r["probe"], r["metric"]) for r in picked}):
        values = [r["value"] for r in picked if (r["modality"], r["probe"], r["metric"]) == key]
        out.append(
            {
                "method": method,
                "setting": setting_name(method, setting),
                "modality": key[0],
                "probe": key[1],
                "metric": key[2],
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "seeds": len(values),
            }
        )
    return out


def _print(console: Console, searched: list[dict[str, Any]], final: list[dict[str, Any]]) -> None:
    table = Table(title="Search on val (linear probe val accuracy %, mean over students and seeds)")
    table.add_column("setting")
    table.add_column("val %", justify="right")
    for row in searched:
        table.add_row(row["setting"], f"{100 * row['val_accuracy']:.2f}")
    console.print(table)
    table = Table(title="Chosen settings: linear probe, mean ± std over the final seeds (%)")
    for column in ("setting", "student", "val", "test"):
        table.add_column(column, justify="left" if column in ("setting", "student") else "right")
    for row in final:
        if (row["probe"], row["metric"]) != ("linear", "accuracy"):
            continue
        val = next(
            r
            for r in final
            if r["setting"] == row["setting"]
            and r["modality"] == row["modality"]
            and (r["probe"], r["metric"]) == ("linear", "val_accuracy")
        )
        table.add_row(
            row["setting"],
            row["modality"],
            f"{100 * val['mean']:.1f} ± {100 * val['std']:.1f}",
            f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
