"""CPU seconds of the command line's quick paths, against their targets.

    python3 benchmarks/bench_cli_startup.py [--repeats 5] [--json OUT.json]

Each command runs ``--repeats`` times in a fresh interpreter (``python -m xmodal ...``, the
worktree first on ``PYTHONPATH``); its cost is the user + system CPU time of that child
(``resource.getrusage(RUSAGE_CHILDREN)`` before and after), and the table shows the median and
its ratio to the target: 1 s for ``--version``, ``--help`` and ``list`` (they import no torch),
3 s for refusing a misspelt method name (``run scenes --set distill.methods=[wcrod]``, which must
exit 2 before any stage runs). Wall time is shown too, but the CPU time is the measure: it does
not depend on what else the machine runs. The entry points come from the installed metadata:
run it after ``pip install -e .`` of this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent

#: (label, arguments after ``xmodal``, expected exit status, CPU-second target)
COMMANDS = [
    ("xmodal --version", ["--version"], 0, 1.0),
    ("xmodal --help", ["--help"], 0, 1.0),
    ("xmodal list", ["list"], 0, 1.0),
    ("misspelt method refused", ["run", "scenes", "--set", "distill.methods=[wcrod]"], 2, 3.0),
]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: list[str], status: int, out: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``python -m xmodal ARGS`` in a fresh interpreter."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if args[0] == "run":
        args = [*args, "--out", str(out)]
    before, start = _cpu_seconds(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", *args], capture_output=True, text=True, env=env
    )
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - before
    if proc.returncode != status:
        raise SystemExit(
            f"xmodal {' '.join(args)} exited {proc.returncode}, not {status}: {proc.stderr[-500:]}"
        )
    if args[0] == "run" and out.exists():
        raise SystemExit(f"xmodal {' '.join(args)} wrote {out}: the refusal came too late")
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (median shown)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, args, status, target in COMMANDS:
            runs = [measure(args, status, Path(tmp) / "run") for _ in range(opts.repeats)]
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            rows.append({"command": label, "cpu_s": cpu, "wall_s": wall, "target_cpu_s": target})
    table = Table(title=f"CLI start-up, CPU seconds (median of {opts.repeats} fresh processes)")
    for column in ("command", "CPU s", "wall s", "target CPU s", "CPU / target"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for row in rows:
        ratio = row["cpu_s"] / row["target_cpu_s"]
        table.add_row(
            row["command"],
            f"{row['cpu_s']:.2f}",
            f"{row['wall_s']:.2f}",
            f"{row['target_cpu_s']:.0f}",
            f"{ratio:.2f}" + ("" if ratio <= 1 else "  over"),
        )
    Console().print(table)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
