"""xmodal's ``sinkhorn_log`` against POT's log-domain Sinkhorn on the same inputs.

    python3 benchmarks/bench_sinkhorn.py [--out benchmarks/results] [--threads 1]
                                         [--sizes 64 256 1024] [--eps 0.05 0.01]
                                         [--tol 1e-6] [--max-iters 1000] [--repeats 5]

Inputs: for each batch size B, WCoRD's local-term cost ``C = 1 - <u_i, v_j>`` for random unit
vectors (d = 128, WCoRD's projection size), B x B float32, uniform marginals. Both solvers get
the same torch tensors (POT through its torch backend), the same ``eps``, stopping tolerance and
iteration cap: ``sinkhorn_log(C, TransportOptions(eps, max_iters, tol * B), a, b)`` (its
tolerance is per point) and
``ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", numItermax=max_iters, stopThr=tol)``.

Their stopping tests differ (xmodal: max abs marginal error < tol, checked every 10 iterations;
POT: L2 norm of the column-marginal error < tol, checked at iterations 1, 11, 21, ...), so the
table also reports, for each, the iterations run and the final marginal error measured the same
way (max abs row/column error, in float64, from the returned plan), plus the max abs difference
between the two plans. One warm-up call each, then ``--repeats`` calls of each, interleaved;
the table shows median wall times and their ratio (POT / xmodal: > 1 means xmodal is faster).
Results go to ``<out>/bench_sinkhorn.json`` and ``.csv``, with the machine facts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.objectives.sinkhorn import TransportOptions, sinkhorn_log  # noqa: E402


def make_cost(size: int, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=1)
    v = torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=1)
    return (1.0 - u @ v.t()).to(device)


def marginal_error(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    p = plan.double()
    return max(
        float((p.sum(1) - a.double()).abs().max()), float((p.sum(0) - b.double()).abs().max())
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(threads: int, device: torch.device, ot_version: str) -> dict:
    facts = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "pot": ot_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both solvers (default 1: stable timings)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.01])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import ot  # POT; imported here so --help works without it

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    facts = machine_facts(args.threads, device, ot.__version__)
    console = Console(width=None if sys.stdout.isatty() else 150)  # full table in logs too
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    rows = []
    for size in args.sizes:
        cost = make_cost(size, args.dim, args.seed, device)
        a = torch.full((size,), 1.0 / size, device=device)
        b = torch.full((size,), 1.0 / size, device=device)
        for eps in args.eps:
            options = TransportOptions(
                sinkhorn_eps=eps, sinkhorn_iters=args.max_iters, sinkhorn_tol=args.tol * size
            )

            def run_xmodal(options: TransportOptions = options, cost=cost, a=a, b=b):
                return sinkhorn_log(cost, options, a, b)

            def run_pot(cost=cost, eps=eps, a=a, b=b):
                return ot.sinkhorn(
                    a,
                    b,
                    cost,
                    eps,
                    method="sinkhorn_log",
                    numItermax=args.max_iters,
                    stopThr=args.tol,
                    log=True,
                    warn=False,
                )

            t_x, res_x = timed(run_xmodal)  # warm-up
            t_p, (plan_p, log_p) = timed(run_pot)
            repeats = args.repeats if max(t_x, t_p) < 2.0 else min(args.repeats, 3)
            times_x, times_p = [], []
            for _ in range(repeats):  # interleaved so that machine drift hits both alike
                times_x.append(timed(run_xmodal)[0])
                times_p.append(timed(run_pot)[0])
            med_x, med_p = statistics.median(times_x), statistics.median(times_p)
            iters_p = int(log_p["niter"]) + 1
            row = {
                "B": size,
                "eps": eps,
                "tol": args.tol,
                "max_iters": args.max_iters,
                "repeats": repeats,
                "xmodal_ms": med_x * 1e3,
                "pot_ms": med_p * 1e3,
                "ratio_pot_over_xmodal": med_p / med_x,
                "xmodal_iters": res_x.iterations,
                "pot_iters": iters_p,
                "xmodal_us_per_iter": med_x * 1e6 / res_x.iterations,
                "pot_us_per_iter": med_p * 1e6 / iters_p,
                "max_abs_plan_diff": float((res_x.plan.double() - plan_p.double()).abs().max()),
                "xmodal_marginal_error": marginal_error(res_x.plan, a, b),
                "pot_marginal_error": marginal_error(plan_p, a, b),
                "xmodal_times_ms": [t * 1e3 for t in times_x],
                "pot_times_ms": [t * 1e3 for t in times_p],
            }
            rows.append(row)
            console.print(
                f"B={size} eps={eps}: xmodal {row['xmodal_ms']:.2f} ms, POT {row['pot_ms']:.2f} ms"
            )

    table = Table(
        title=f"Sinkhorn (log domain), median of repeats, tol={args.tol:g}, "
        f"max_iters={args.max_iters}, {args.threads} thread(s), {device}"
    )
    for col in (
        "B",
        "eps",
        "xmodal ms",
        "POT ms",
        "POT/xmodal",
        "iters x/POT",
        "us/iter x/POT",
        "max|dP|",
        "marg err x",
        "marg err POT",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["B"]),
            f"{r['eps']:g}",
            f"{r['xmodal_ms']:.2f}",
            f"{r['pot_ms']:.2f}",
            f"{r['ratio_pot_over_xmodal']:.2f}x",
            f"{r['xmodal_iters']}/{r['pot_iters']}",
            f"{r['xmodal_us_per_iter']:.0f}/{r['pot_us_per_iter']:.0f}",
            f"{r['max_abs_plan_diff']:.1e}",
            f"{r['xmodal_marginal_error']:.1e}",
            f"{r['pot_marginal_error']:.1e}",
        )
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "bench_sinkhorn",
        "machine": facts,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": rows,
    }
    write_json_atomic(args.out / "bench_sinkhorn.json", payload)
    write_csv(
        args.out / "bench_sinkhorn.csv",
        [{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows],
    )
    console.print(f"wrote {args.out / 'bench_sinkhorn.json'} and {args.out / 'bench_sinkhorn.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
