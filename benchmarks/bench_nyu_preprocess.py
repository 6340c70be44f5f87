"""NYU-Depth V2 preprocessing rate and peak memory on a full-resolution file in the real layout.

    python3 benchmarks/bench_nyu_preprocess.py [--frames 100] [--image-size 120 160]
                                               [--threads 1] [--out benchmarks/results]

Writes a ``--frames``-frame ``nyu_depth_v2_labeled.mat`` (480 x 640, MATLAB v7.3 layout, via
the test fixture writer; needs the ``test`` extra for hdf5storage), then runs, each in a fresh
process so that peak memory (max RSS) belongs to that job alone:

- ``read``: the reference, decoding every frame from the file and nothing else;
- ``gradient``: the full preprocessing (crop, resize, HHA with finite-difference normals);
- ``open3d``: the same with open3d's KNN normals.

Reports frames/s, the ratio of each job's time to the read-only reference, and peak RSS
(which includes the ~0.4 GB of an imported torch). The frames here are planted ramps, not
rooms; normal estimation cost does not depend on the scene, so the rate carries over.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _job(
    kind: str,
    source: str,
    cache: str,
    image_size: list[int],
    threads: int,
    result: multiprocessing.Queue,
) -> None:
    """Run one job in this (fresh) process; put ``(seconds, frames, peak_rss_bytes)``."""
    import torch

    from xmodal.data.nyu.cache import build_cache
    from xmodal.data.nyu.config import NYUDepthOptions
    from xmodal.data.nyu.reader import NYULabeledFile

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if kind == "read":
        with NYULabeledFile(source) as nyu:
            frames = len(nyu)
            for i in range(frames):
                nyu.frame(i)
    else:
        Path(cache).unlink(missing_ok=True)
        config = NYUDepthOptions(path=source, image_size=image_size, normals=kind)
        build_cache(config, Path(cache))
        with NYULabeledFile(source) as nyu:
            frames = len(nyu)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result.put((seconds, frames, peak))


def run_job(
    kind: str, source: Path, cache: Path, image_size: list[int], threads: int
) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_job, args=(kind, str(source), str(cache), image_size, threads, queue)
    )
    proc.start()
    seconds, frames, peak = queue.get()
    proc.join()
    return {
        "job": kind,
        "seconds": seconds,
        "frames": frames,
        "frames_per_s": frames / seconds,
        "peak_rss_gb": peak / 2**30,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--image-size", type=int, nargs=2, default=[120, 160])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", nargs="+", default=["read", "gradient", "open3d"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    from xmodal.core.records import write_csv, write_json_atomic

    sys.path.insert(0, str(ROOT / "tests"))
    from nyu_fixtures import write_nyu_labeled

    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / f"nyu_bench_{args.frames}.mat"
    if not source.is_file():
        console.print(f"writing {args.frames} full-resolution frames to {source} ...")
        write_nyu_labeled(source, frames=args.frames)
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s); file {source.stat().st_size / 2**20:.0f} MiB"
    )
    rows = [
        run_job(
            kind, source, args.out / f"nyu_bench_cache_{kind}.h5", args.image_size, args.threads
        )
        for kind in args.jobs
    ]
    reference = next((r for r in rows if r["job"] == "read"), None)
    table = Table(
        title=f"NYU preprocessing, {args.frames} frames 480x640 -> "
        f"{args.image_size[0]}x{args.image_size[1]}"
    )
    for col in ("job", "frames/s", "ms/frame", "time / read", "peak RSS GB"):
        table.add_column(col, justify="right")
    for row in rows:
        row["time_over_read"] = row["seconds"] / reference["seconds"] if reference else None
        table.add_row(
            row["job"],
            f"{row['frames_per_s']:.1f}",
            f"{1000 / row['frames_per_s']:.0f}",
            f"{row['time_over_read']:.1f}x" if reference else "-",
            f"{row['peak_rss_gb']:.2f}",
        )
    console.print(table)
    write_json_atomic(
        args.out / "bench_nyu_preprocess.json",
        {
            "frames": args.frames,
            "image_size": args.image_size,
            "threads": args.threads,
            "rows": rows,
        },
    )
    write_csv(args.out / "bench_nyu_preprocess.csv", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
