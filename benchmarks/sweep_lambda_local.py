"""Sweep WCoRD's local-term weight lambda_2 (``distill.wcord.lambda_local``) on ``scenes``.

    python3 benchmarks/sweep_lambda_local.py [--values 0 0.05 0.1 0.3 1.0] [--seeds 0 1]
                                             [--out runs/sweep-lambda-local]

One base run trains the floor (``none``), the reference (``supervised``) and the teacher; each
value then reuses its dataset and teacher (copied units, so nothing is recomputed) and trains
only ``wcord``. Prints the gap closed per modality and value; writes JSON and CSV beside it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.pipelines import run_pipeline  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.3, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="runs/sweep-lambda-local")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    console = Console()
    out = Path(args.out)
    seeds = f"seeds=[{','.join(map(str, args.seeds))}]"
    students = "distill.students=[depth,audio]"  # the sweep's students, whatever the default
    base = run_pipeline(
        "scenes",
        out=out / "base",
        console=console,
        overrides=[seeds, students, "distill.methods=[none,supervised]", *args.overrides],
    )
    floor = {
        (r["modality"], r["seed"], r["method"]): r["value"]
        for r in base.rows
        if r["metric"] == "accuracy"
    }
    rows = []
    for value in args.values:
        run_dir = out / f"lambda_local={value:g}"
        for shared in ("data", "teacher"):
            if not (run_dir / shared).exists():
                shutil.copytree(out / "base" / shared, run_dir / shared)
        result = run_pipeline(
            "scenes",
            out=run_dir,
            console=console,
            overrides=[
                seeds,
                students,
                "distill.methods=[wcord]",
                *args.overrides,
                f"distill.wcord.lambda_local={value}",
            ],
        )
        for r in result.rows:
            if r["metric"] != "accuracy" or r["method"] != "wcord":
                continue
            lo, hi = (
                floor[(r["modality"], r["seed"], "none")],
                floor[(r["modality"], r["seed"], "supervised")],
            )
            rows.append(
                {
                    "lambda_local": value,
                    "modality": r["modality"],
                    "seed": r["seed"],
                    "accuracy": r["value"],
                    "gap_closed": (r["value"] - lo) / (hi - lo),
                }
            )
    table = Table(
        title="WCoRD lambda_local sweep on scenes: test accuracy / gap closed (mean over seeds)"
    )
    table.add_column("lambda_local", justify="right")
    modalities = sorted({r["modality"] for r in rows})
    for m in modalities:
        table.add_column(f"{m} acc %", justify="right")
        table.add_column(f"{m} gap %", justify="right")
    for value in args.values:
        cells = []
        for m in modalities:
            sel = [r for r in rows if r["lambda_local"] == value and r["modality"] == m]
            cells += [
                f"{100 * statistics.fmean(r['accuracy'] for r in sel):.1f}",
                f"{100 * statistics.fmean(r['gap_closed'] for r in sel):.0f}",
            ]
        table.add_row(f"{value:g}", *cells)
    console.print(table)
    write_json_atomic(out / "sweep.json", rows)
    write_csv(out / "sweep.csv", rows)
    console.print(f"saved {out / 'sweep.json'} and .csv")
    return rows


if __name__ == "__main__":
    main()
