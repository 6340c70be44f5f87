"""Cost of one distillation training step, per method, against a bare student step.

    python3 benchmarks/bench_step.py [--batches 64 256] [--methods wcord wcord-global crd]
                                     [--steps 20] [--threads 2] [--out benchmarks/results]

Reference (``none``): teacher forward (frozen, no grad) + student forward/backward + optimiser
step, with a loss that costs nothing. Each method adds its objective (heads, critic, memory
bank read/update, Sinkhorn) to exactly that step. Steps of all methods are interleaved so that
machine drift hits them equally; the table reports median milliseconds and the ratio to
``none`` measured in the same run. Default models: the ``scenes`` pipeline's resnet8 RGB
teacher and resnet8 depth student at 32x32, N = 1200 training samples.
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

import xmodal  # noqa: E402,F401
from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.core.registry import METHODS  # noqa: E402
from xmodal.encoders import create_encoder  # noqa: E402
from xmodal.objectives.objective import ObjectiveContext  # noqa: E402
from xmodal.pipelines.config import DistillConfig  # noqa: E402


class _FreeObjective(torch.nn.Module):
    """The ``none`` reference: a loss that touches the features and costs nothing."""

    def forward(self, student, teacher, labels, indices):
        return {"loss": student.mean()}


def build_step(method: str, batch: int, num_samples: int, num_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    teacher = create_encoder("resnet8", "rgb").eval()
    student = create_encoder("resnet8", "depth")
    if method == "none":
        objective = _FreeObjective()
    else:
        entry = METHODS.get(method)
        cfg = DistillConfig()
        ctx = ObjectiveContext(
            student_dim=student.embed_dim,
            teacher_dim=teacher.embed_dim,
            num_samples=num_samples,
            num_classes=num_classes,
            seed=seed,
            teacher_logits=torch.randn(num_samples, num_classes),
        )
        objective = entry.build(ctx, cfg.options_for(method))
    params = list(student.parameters()) + list(objective.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=g)
    depth = torch.rand(batch, 32, 32, generator=g) * 4 + 0.5
    labels = torch.randint(0, num_classes, (batch,), generator=g)

    def step() -> None:
        indices = torch.randperm(num_samples)[:batch]
        with torch.no_grad():
            t = teacher(rgb)
        out = objective(student(depth), t, labels, indices)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(objective, "update_memory") and "teacher_embed" in out:
            objective.update_memory(indices, out["teacher_embed"], out["student_embed"])

    return step


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--methods", nargs="+", default=["wcord", "wcord-global", "wcord-local"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=1200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    methods = ["none"] + [m for m in args.methods if m != "none"]
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, {args.steps} timed steps"
    )
    rows = []
    for batch in args.batches:
        steps = {m: build_step(m, batch, args.num_samples, 8) for m in methods}
        times: dict[str, list[float]] = {m: [] for m in methods}
        for i in range(args.warmup + args.steps):
            for m in methods:  # interleaved: drift hits every method alike
                start = time.perf_counter()
                steps[m]()
                if i >= args.warmup:
                    times[m].append(time.perf_counter() - start)
        base = statistics.median(times["none"])
        for m in methods:
            med = statistics.median(times[m])
            rows.append(
                {
                    "batch": batch,
                    "method": m,
                    "median_ms": 1000 * med,
                    "ratio_to_none": med / base,
                    "steps": args.steps,
                    "threads": args.threads,
                }
            )
    table = Table(title="one training step: depth student (resnet8, 32x32) + frozen RGB teacher")
    for col in ("batch", "method", "median ms", "ratio to none"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch"]), r["method"], f"{r['median_ms']:.1f}", f"{r['ratio_to_none']:.3f}"
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench_step.json", rows)
    write_csv(out / "bench_step.csv", rows)
    console.print(f"saved {out / 'bench_step.json'} and .csv")
    return rows


if __name__ == "__main__":
    main()
