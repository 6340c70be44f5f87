"""Peak memory and read rate of a ``paired`` dataset streamed from its cache, at two sizes.

    python3 benchmarks/bench_streaming.py [--sizes 2000 20000] [--workers 0 2] [--batch 64]
                                          [--data benchmarks/results/streaming-data]
                                          [--out benchmarks/results] [--run]

For each size, writes (once; reused from ``--data``) a manifest of 64x64 RGB PNG + 0.25 s WAV
pairs with labels, converts it into the HDF5 cache with the ``paired`` dataset (the preprocess
stage: validation + conversion), then reads one epoch of the train split through the training
loader with each number of workers. Every job runs in a fresh process; peak RSS is the job's own
(its workers included, as the largest of the process and its children). The reference is the
smaller size: streaming means the peak RSS of the larger one stays within 25 % of it, although
the data is 10x larger. Reads: samples/s of the epoch, and the ratio of each worker count to 0.

``--run`` adds a whole ``xmodal run paired`` per size (rgb teacher -> audio student, one epoch
each, WCoRD, linear probe; its own preprocess included), timed, with its peak RSS: the run, not
only the reader, should not grow with the data.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
import wave
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE = 8000
CLASSES = 4


def write_dataset(folder: Path, rows: int) -> Path:
    """The manifest of ``rows`` PNG + WAV pairs (written once)."""
    import numpy as np
    import torch
    from torchvision.io import write_png

    manifest = folder / "manifest.csv"
    if manifest.is_file():
        return manifest
    (folder / "rgb").mkdir(parents=True, exist_ok=True)
    (folder / "audio").mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    lines = ["rgb,audio,label"]
    t = np.arange(RATE // 4) / RATE
    for i in range(rows):
        c = i % CLASSES
        image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)
        write_png(image, str(folder / "rgb" / f"{i:05d}.png"))
        tone = (0.5 * np.sin(2 * np.pi * (300 + 200 * c) * t) * 32767).astype(np.int16)
        with wave.open(str(folder / "audio" / f"{i:05d}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(tone.tobytes())
        lines.append(f"rgb/{i:05d}.png,audio/{i:05d}.wav,{c}")
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, manifest)  # complete, or absent
    return manifest


def _peak_rss() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def _prepare(manifest: str, cache: str, result: multiprocessing.Queue) -> None:
    import torch

    from xmodal.data.paired.config import PairedOptions
    from xmodal.data.paired_source import PairedSource

    torch.set_num_threads(1)
    options = PairedOptions(
        path=manifest, image_size=[64, 64], sample_rate=RATE, audio_seconds=0.25
    )
    start = time.perf_counter()
    PairedSource().prepare(options, Path(cache))
    result.put((time.perf_counter() - start, _peak_rss()))


def _read(cache: str, workers: int, batch: int, result: multiprocessing.Queue) -> None:
    import torch

    from xmodal.data.arrays import make_loader
    from xmodal.data.paired_source import PairedSource

    torch.set_num_threads(1)
    train = PairedSource().load(Path(cache)).splits["train"]
    loader = make_loader(train, batch, shuffle=True, seed=0, num_workers=workers)
    start = time.perf_counter()
    seen = 0
    for b in loader:
        seen += len(b["index"])
        _ = b["rgb"].float().mean() + b["audio"].float().mean()  # touch the data
    result.put((seen / (time.perf_counter() - start), _peak_rss(), seen))


def _run(manifest: str, out: str, workers: int, result: multiprocessing.Queue) -> None:
    """A short whole pipeline run in a child process; its peak RSS is the child's."""
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    sets = [
        "data.paired.image_size=[64,64]",
        f"data.paired.sample_rate={RATE}",
        "data.paired.audio_seconds=0.25",
        "teacher.modality=rgb",
        "distill.students=[audio]",
        "teacher.optim.epochs=1",
        "distill.optim.epochs=1",
        "distill.methods=[wcord]",
        "probe.probes=[linear]",
        f"data.num_workers={workers}",
    ]
    command = [sys.executable, "-m", "xmodal", "run", "paired", "--data", manifest, "--out", out]
    for item in sets:
        command += ["--set", item]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    result.put((time.perf_counter() - start, _peak_rss()))


def _in_fresh_process(target, *args):
    """``target(*args, queue)`` in a spawned process -> what it put on the queue.

    A child that dies first (its error is printed above) stops the benchmark instead of hanging
    it.
    """
    import queue as queues

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            value = queue.get(timeout=1.0)
            break
        except queues.Empty:
            if not process.is_alive():
                raise SystemExit(
                    f"{target.__name__.strip('_')} failed (exit {process.exitcode}); "
                    "its error is above"
                ) from None
    process.join()
    return value


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--data", default=str(Path(__file__).parent / "results" / "streaming-data"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--run", action="store_true", help="also time a whole short pipeline run per size"
    )
    args = parser.parse_args(argv)
    from xmodal.core.records import write_csv, write_json_atomic

    console = Console(width=max(110, Console().width))  # the table unfolded in logs too
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"sizes {args.sizes}, workers {args.workers}, batch {args.batch}"
    )
    rows = []
    for size in args.sizes:
        folder = Path(args.data) / f"rows{size}"
        manifest = write_dataset(folder, size)
        cache = folder / "cache.h5"
        cache.unlink(missing_ok=True)
        seconds, peak = _in_fresh_process(_prepare, str(manifest), str(cache))
        rows.append(
            {
                "size": size,
                "job": "prepare",
                "workers": 0,
                "samples_per_s": size / seconds,
                "peak_rss_mb": peak / 2**20,
                "cache_mb": cache.stat().st_size / 2**20,
            }
        )
        for workers in args.workers:
            rate, peak, seen = _in_fresh_process(_read, str(cache), workers, args.batch)
            rows.append(
                {
                    "size": size,
                    "job": "read epoch",
                    "workers": workers,
                    "samples_per_s": rate,
                    "peak_rss_mb": peak / 2**20,
                    "cache_mb": cache.stat().st_size / 2**20,
                    "samples": seen,
                }
            )
        if args.run:
            seconds, peak = _in_fresh_process(_run, str(manifest), str(folder / "run"), 0)
            rows.append(
                {
                    "size": size,
                    "job": "xmodal run",
                    "workers": 0,
                    "samples_per_s": size / seconds,
                    "peak_rss_mb": peak / 2**20,
                    "cache_mb": cache.stat().st_size / 2**20,
                    "seconds": seconds,
                }
            )
    smallest = min(args.sizes)
    for r in rows:
        ref = next(
            x
            for x in rows
            if x["size"] == smallest and x["job"] == r["job"] and x["workers"] == r["workers"]
        )
        r["rss_vs_smallest"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
        zero = next(
            (
                x
                for x in rows
                if x["size"] == r["size"] and x["job"] == r["job"] and x["workers"] == 0
            ),
            r,
        )
        r["rate_vs_0_workers"] = r["samples_per_s"] / zero["samples_per_s"]
    table = Table(title="paired dataset streamed from its cache (64x64 PNG + WAV)")
    for col in (
        "rows",
        "job",
        "workers",
        "samples/s",
        "x 0 workers",
        "peak RSS MB",
        f"x {smallest} rows",
        "cache MB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["size"]),
            r["job"],
            str(r["workers"]),
            f"{r['samples_per_s']:.0f}",
            f"{r['rate_vs_0_workers']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['rss_vs_smallest']:.2f}",
            f"{r['cache_mb']:.0f}",
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench_streaming.json", rows)
    write_csv(out / "bench_streaming.csv", rows)
    console.print(f"saved {out / 'bench_streaming.json'} and .csv")
    return rows


if __name__ == "__main__":
    main()
