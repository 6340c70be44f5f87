"""CPU seconds of the load-time dry run on the default ``scenes`` config, cold and cached.

    python3 benchmarks/bench_dry_run.py [--repeats 5]

The dry run (:mod:`xmodal.pipelines.dry_run`) builds and runs the teacher's and each student's
encoder once, takes one step of each method and fits each probe once, before any stage. Cold:
into a fresh run directory; cached: again into the same one (every check passed before, so
only the plan and the identities are computed). The table shows the median process CPU time
(``time.process_time``) of each and its ratio to the 5 s target of issue 21; wall time beside.
Imports and the config's load are not counted (``xmodal run`` pays them with or without it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xmodal.pipelines.dry_run import dry_run
from xmodal.pipelines.runner import resolve_config

TARGET_S = 5.0


def main() -> None:
    """Time the dry run cold and cached; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spec, config = resolve_config("scenes")
    times: dict[str, list[tuple[float, float]]] = {"cold": [], "cached": []}
    checks = 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="xmodal-bench-") as folder:
            for label in ("cold", "cached"):
                cpu, wall = time.process_time(), time.perf_counter()
                ran = dry_run(config, spec.stages, Path(folder))
                times[label].append((time.process_time() - cpu, time.perf_counter() - wall))
                checks = max(checks, len(ran))
    table = Table(title=f"dry run of `xmodal run scenes` ({checks} checks), {args.repeats} runs")
    for column in ("", "CPU s (median)", "wall s (median)", "target s", "CPU / target"):
        table.add_column(column, justify="right")
    for label, rows in times.items():
        cpu = statistics.median(t for t, _ in rows)
        wall = statistics.median(w for _, w in rows)
        table.add_row(
            label, f"{cpu:.3f}", f"{wall:.3f}", f"{TARGET_S:.0f}", f"{cpu / TARGET_S:.3f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
