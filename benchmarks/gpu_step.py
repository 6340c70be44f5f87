"""One WCoRD training step in bf16 autocast against fp32: step time and peak memory.

    python3 benchmarks/gpu_step.py [--device cuda] [--batch 256] [--image-size 120 160]
                                   [--steps 20] [--warmup 5] [--out benchmarks/results]

The step of the ``nyu-depth`` setting: a resnet18 student on HHA images (``[B, H, W, 3]`` uint8),
frozen teacher features (512-d, precomputed as in the pipeline), the WCoRD objective with its
default options (N = 1449 rows in the banks), AdamW. Both precisions run the same seeded step,
interleaved; the table gives median milliseconds, peak memory (CUDA: max allocated; CPU: max
RSS of the process) and the fp32/bf16 ratios. The OT plan and the normalisations stay in float32
under bf16 (see ``WCoRDLoss``). ``--device cpu --batch 4 --image-size 32 40 --steps 1`` is a smoke
run that needs no GPU.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.encoders import create_encoder  # noqa: E402
from xmodal.objectives.wcord import WCoRDLoss  # noqa: E402

NUM_SAMPLES = 1449  # NYU-Depth V2's labeled frames


def build_step(device: torch.device, batch: int, size: tuple[int, int], dtype: torch.dtype | None):
    torch.manual_seed(0)
    student = create_encoder("resnet18", "hha").to(device)
    loss = WCoRDLoss(student.embed_dim, 512, NUM_SAMPLES).to(device)
    optimizer = torch.optim.AdamW([*student.parameters(), *loss.parameters()], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    hha = torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=g).to(device)
    teacher = torch.randn(batch, 512, generator=g).to(device)
    indices = torch.randperm(NUM_SAMPLES, generator=g)[:batch].to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = loss(student(hha), teacher, indices=indices)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.update_memory(indices, out["teacher_embed"], out["student_embed"])

    return step


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, nargs=2, default=[120, 160])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_step: no CUDA device here; run it on a GPU machine, or smoke-test it "
            "with --device cpu --batch 4 --image-size 32 40 --steps 1"
        )
    console = Console()
    rows = []
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step = build_step(device, args.batch, tuple(args.image_size), dtype)
        times = []
        for i in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        rows.append(
            {
                "precision": name,
                "step_ms": 1000 * statistics.median(times),
                "peak_mb": peak_bytes(device) / 2**20,
                "batch": args.batch,
                "image_size": list(args.image_size),
                "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
                "torch": torch.__version__,
            }
        )
    base = rows[0]
    height, width = args.image_size[0], args.image_size[1]
    table = Table(title=f"one WCoRD step: resnet18 on {height}x{width} HHA, batch {args.batch}")
    for col in ("precision", "step ms", "fp32 / this", "peak MB", "fp32 / this"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["precision"],
            f"{r['step_ms']:.1f}",
            f"{base['step_ms'] / r['step_ms']:.2f}",
            f"{r['peak_mb']:.0f}",
            f"{base['peak_mb'] / r['peak_mb']:.2f}",
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "gpu_step.json", rows)
    write_csv(out / "gpu_step.csv", rows)
    return rows


if __name__ == "__main__":
    main()
