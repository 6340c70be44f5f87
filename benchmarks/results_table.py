"""One results table from the rows of several runs (e.g. a method table and a search's settings).

    python3 benchmarks/results_table.py RESULTS.json[::LABEL] [...] [--methods a b ...]
                                        [--against METHOD] [--out table.md] [--csv table.csv]

Each argument is a run's ``results.json`` or a run directory (its ``results.json`` and the probe
records of every seed it probed, for runs made seed by seed); ``::LABEL`` names
that run's trained students' method ``LABEL`` (e.g. a search's setting beside the defaults).
Rows are merged, a (modality, method, probe, metric, seed) seen twice keeps its first value,
and each method's mean ± std over seeds is printed per student for the linear probe
(accuracy), k-NN (accuracy) and segmentation (mIoU), with the seeds counted and the gap closed
``(method - none) / (supervised - none)`` on the linear means. Writes markdown and CSV.

``--against METHOD`` adds a second table: for each method and student, the per-seed difference
``method - METHOD`` of the linear probe's accuracy (points), mean ± std over the seeds both
have. Two methods trained from one seed share the data order and the teacher, so this spread
is the one that decides whether a lead is more than noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv  # noqa: E402
from xmodal.evaluation.summary import summarise  # noqa: E402

#: (probe, metric, column title) of the table
COLUMNS = (
    ("linear", "accuracy", "linear"),
    ("knn", "accuracy", "k-NN"),
    ("semantic", "mean_iou", "seg mIoU"),
)


#: numbers a probe record holds that are its settings, not metrics
PROBE_SETTINGS = ("l2", "k", "temperature", "weight_decay", "epochs")


def probe_records(run_dir: Path) -> list[dict[str, Any]]:
    """Rows from a run directory's probe records, ``probe/seedS/<modality>-<method>/<probe>/``.

    A run's ``results.json`` holds the seeds of its last invocation only; the records of every
    seed it ever probed stay in its cache, so a directory run seed by seed is read whole.
    """
    rows = []
    for record in sorted(run_dir.glob("probe/seed*/*-*/*/done.json")):
        unit, probe = record.parent.parent.name, record.parent.name
        modality, _, method = unit.partition("-")
        seed = int(record.parent.parent.parent.name.removeprefix("seed"))
        for metric, value in json.loads(record.read_text()).get("record", {}).items():
            if isinstance(value, (int, float)) and metric not in PROBE_SETTINGS:
                rows.append(
                    {
                        "modality": modality,
                        "method": method,
                        "role": "teacher" if method == "teacher" else "student",
                        "probe": probe,
                        "metric": metric,
                        "value": float(value),
                        "seed": seed,
                    }
                )
    return rows


def merged_rows(paths: list[str]) -> list[dict[str, Any]]:
    seen: dict[tuple, dict[str, Any]] = {}
    for spec in paths:
        name, _, label = spec.partition("::")
        path = Path(name)
        if path.is_dir():
            results = path / "results.json"
            found = json.loads(results.read_text()) if results.is_file() else []
            found += probe_records(path)
        elif path.is_file():
            found = json.loads(path.read_text())
        else:
            raise SystemExit(
                f"error: no results in '{path}' (a run's results.json, or its directory)"
            )
        if not found:
            raise SystemExit(f"error: no results or probe records in '{path}'")
        for row in found:
            if (
                label
                and row.get("role") == "student"
                and row["method"] not in ("none", "supervised")
            ):
                row = {**row, "method": label}
            key = (row["modality"], row["method"], row["probe"], row["metric"], row["seed"])
            seen.setdefault(key, row)
    return list(seen.values())


def table(
    rows: list[dict[str, Any]], methods: list[str] | None, students: list[str] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    summary = {(e["modality"], e["method"], e["probe"], e["metric"]): e for e in summarise(rows)}
    students = students or sorted({r["modality"] for r in rows if r.get("role") == "student"})
    order = methods or list(dict.fromkeys(r["method"] for r in rows if r.get("role") == "student"))
    header = ["method"] + [f"{s} {title}" for s in students for _, _, title in COLUMNS] + ["seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    flat = []
    for method in order:
        cells, seeds = [method], set()
        for student in students:
            for probe, metric, _ in COLUMNS:
                entry = summary.get((student, method, probe, metric))
                if entry is None:
                    cells.append("")
                    continue
                seeds.add(entry["n"])
                gap = entry["gap_closed"]
                cells.append(
                    f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"
                    + (
                        f" ({100 * gap:.0f} %)"
                        if probe == "linear"
                        and gap is not None
                        and method not in ("none", "supervised")
                        else ""
                    )
                )
                flat.append(
                    {
                        "method": method,
                        "modality": student,
                        "probe": probe,
                        "metric": metric,
                        "mean": entry["mean"],
                        "std": entry["std"],
                        "seeds": entry["n"],
                        "gap_closed": gap,
                    }
                )
        cells.append("/".join(str(n) for n in sorted(seeds)))  # per column, when they differ
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), flat


def differences(
    rows: list[dict[str, Any]],
    reference: str,
    methods: list[str] | None,
    students: list[str] | None = None,
) -> str:
    """Markdown table of the per-seed linear-probe differences against ``reference`` (points)."""
    accuracy: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        if row.get("role") == "student" and (row["probe"], row["metric"]) == ("linear", "accuracy"):
            accuracy.setdefault((row["modality"], row["method"]), {})[row["seed"]] = row["value"]
    students = students or sorted({student for student, _ in accuracy})
    order = methods or list(dict.fromkeys(method for _, method in accuracy))
    lines = [
        f"| method - {reference} | " + " | ".join(students) + " |",
        "|---|" + "---:|" * len(students),
    ]
    for method in order:
        if method == reference:
            continue
        cells = [method]
        for student in students:
            mine, theirs = (
                accuracy.get((student, method), {}),
                accuracy.get((student, reference), {}),
            )
            seeds = sorted(set(mine) & set(theirs))
            gaps = [100 * (mine[s] - theirs[s]) for s in seeds]
            spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
            cells.append(
                f"{statistics.fmean(gaps):+.1f} ± {spread:.1f} (n={len(gaps)})" if gaps else ""
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="+", help="results.json or run directory, optionally ::LABEL"
    )
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--students", nargs="+", help="student modalities to show (default: all)")
    parser.add_argument(
        "--against", metavar="METHOD", help="add the per-seed differences against METHOD"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    rows = merged_rows(args.results)
    text, flat = table(rows, args.methods, args.students)
    if args.against:
        text += "\n\n" + differences(rows, args.against, args.methods, args.students)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.csv:
        write_csv(args.csv, flat)
    return text


if __name__ == "__main__":
    main()
