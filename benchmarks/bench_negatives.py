"""Memory and step time of WCoRD's negatives at scale: N-row memory banks against a K-entry queue.

    python3 benchmarks/bench_negatives.py [--num-samples 1000000] [--negatives 16384]
                                          [--embed-dim 128] [--batch 256] [--steps 10]
                                          [--threads 2] [--device cpu] [--out benchmarks/results]

Each variant runs in a fresh process (so peak RSS is its own): a ``WCoRDLoss`` with 512-d
teacher and student features, one training step = forward (global and local terms), backward,
AdamW step on the heads, memory update. The reference is ``bank`` (float32, two ``N x d`` banks);
the others are ``bank-bf16`` (the same banks in bfloat16) and ``queue`` / ``queue-bf16``
(``negatives=queue``: two ``K x d`` FIFO queues). Reported: the bytes of the negatives' state
(banks or queues, both modalities), peak RSS (CPU) or peak allocated memory (CUDA), and the
median step time, each with its ratio to ``bank``. The encoders are left out: they cost the same
for every variant.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {
    "bank": ("uniform", "float32"),
    "bank-bf16": ("uniform", "bfloat16"),
    "queue": ("queue", "float32"),
    "queue-bf16": ("queue", "bfloat16"),
}


def _job(variant: str, args: argparse.Namespace, result: multiprocessing.Queue) -> None:
    import torch

    from xmodal.objectives.wcord import WCoRDLoss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    negatives, dtype = VARIANTS[variant]
    loss = WCoRDLoss(
        512,
        512,
        num_samples=args.num_samples,
        embed_dim=args.embed_dim,
        num_negatives=args.negatives,
        negatives=negatives,
        bank_dtype=dtype,
    ).to(device)
    state = sum(
        b.nbytes for name, b in loss.named_buffers() if name.endswith(("bank.memory", "bank.ids"))
    )
    optimizer = torch.optim.AdamW([p for p in loss.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.warmup + args.steps):
        teacher = torch.randn(args.batch, 512, generator=g).to(device)
        student = torch.randn(args.batch, 512, generator=g).to(device).requires_grad_(True)
        indices = torch.randperm(args.num_samples, generator=g)[: args.batch].to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = loss(student, teacher, indices=indices)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.update_memory(indices, out["teacher_embed"], out["student_embed"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    result.put((state, peak, statistics.median(times)))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1_000_000)
    parser.add_argument("--negatives", type=int, default=16384)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    console = Console()
    import torch

    from xmodal.core.records import write_csv, write_json_atomic

    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, device {args.device}; "
        f"N={args.num_samples}, K={args.negatives}, d={args.embed_dim}, B={args.batch}"
    )
    variants = ["bank"] + [v for v in args.variants if v != "bank"]
    context = multiprocessing.get_context("spawn")
    measured = {}
    for variant in variants:
        queue = context.Queue()
        process = context.Process(target=_job, args=(variant, args, queue))
        process.start()
        measured[variant] = queue.get()
        process.join()
    base_state, base_peak, base_time = measured["bank"]
    rows = [
        {
            "variant": v,
            "state_mb": s / 2**20,
            "peak_mb": p / 2**20,
            "step_ms": 1000 * t,
            "state_ratio": s / base_state,
            "peak_ratio": p / base_peak,
            "time_ratio": t / base_time,
            "num_samples": args.num_samples,
            "negatives": args.negatives,
            "embed_dim": args.embed_dim,
            "batch": args.batch,
            "device": args.device,
            "threads": args.threads,
        }
        for v, (s, p, t) in measured.items()
    ]
    peak_name = "peak alloc MB" if args.device.startswith("cuda") else "peak RSS MB"
    table = Table(title="WCoRD negatives: banks against a queue (ratios to 'bank')")
    for col in ("variant", "state MB", "x bank", peak_name, "x bank", "step ms", "x bank"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["variant"],
            f"{r['state_mb']:.1f}",
            f"{r['state_ratio']:.4f}",
            f"{r['peak_mb']:.0f}",
            f"{r['peak_ratio']:.3f}",
            f"{r['step_ms']:.1f}",
            f"{r['time_ratio']:.3f}",
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench_negatives.json", rows)
    write_csv(out / "bench_negatives.csv", rows)
    console.print(f"saved {out / 'bench_negatives.json'} and .csv")
    return rows


if __name__ == "__main__":
    main()
