"""Resident memory of feature extraction with and without giving freed heap pages back.

    python3 benchmarks/bench_heap.py --cache CACHE.h5 [--steps 60] [--batch 64]

``CACHE.h5`` is a ``paired`` cache with an ``rgb`` column, e.g. the one
``bench_streaming.py --sizes 20000`` writes (``.../rows20000/cache.h5``). Each variant runs in a
fresh process: ``--steps`` training steps of a resnet8 rgb encoder, then extraction of the whole
train split with :func:`xmodal.evaluation.features.extract_features`; it reports both times,
the process's peak RSS and its RSS once extraction is done (what the heap kept). The reference
is ``no trim`` (extraction without ``release_free_heap``, as before 3db597e); ``as shipped``
trims after each extraction batch;
the ``mmap`` variants instead fix glibc's mmap threshold, and ``trim every step`` also trims
after each training step.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
VARIANTS = {
    "no trim": {},
    "as shipped": {"trim_extract": True},
    "mmap 128 KB": {"mmap": 128 * 1024},
    "mmap 4 MB": {"mmap": 4 << 20},
    "trim every step": {"trim_extract": True, "trim_train": True},
}


def _variant(
    cache: str, steps: int, batch: int, settings: dict, result: multiprocessing.Queue
) -> None:
    import ctypes

    if "mmap" in settings:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, settings["mmap"])
    import torch

    import xmodal.evaluation.features as features
    from xmodal.core.heap import release_free_heap
    from xmodal.data.arrays import Rows
    from xmodal.data.paired_source import PairedSource
    from xmodal.encoders.base import create_encoder

    if not settings.get("trim_extract"):
        features.release_free_heap = lambda: False
    torch.manual_seed(0)
    train = PairedSource().load(Path(cache)).splits["train"]
    encoder = create_encoder("resnet8", "rgb")
    optimiser = torch.optim.SGD(encoder.parameters(), lr=0.01)
    inputs = Rows(train, "rgb")
    start = time.perf_counter()
    for step in range(steps):
        i = (step * batch) % max(1, len(inputs) - batch)
        loss = encoder(inputs[i : i + batch]).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if settings.get("trim_train"):
            release_free_heap()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    features.extract_features(encoder, train)
    extract_s = time.perf_counter() - start
    with open("/proc/self/status") as status:
        kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
    result.put((train_s, extract_s, kb["VmHWM"] / 1024, kb["VmRSS"] / 1024, len(train)))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="a paired cache (HDF5) with an rgb column")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    from bench_streaming import _in_fresh_process  # noqa: E402  (same folder)

    from xmodal.core.records import write_csv, write_json_atomic

    console = Console(width=max(110, Console().width))
    rows = []
    for name, settings in VARIANTS.items():
        train_s, extract_s, peak, end, n = _in_fresh_process(
            _variant, args.cache, args.steps, args.batch, settings
        )
        rows.append(
            {
                "variant": name,
                "train_s": train_s,
                "extract_s": extract_s,
                "peak_rss_mb": peak,
                "end_rss_mb": end,
                "rows": n,
                "steps": args.steps,
                "batch": args.batch,
            }
        )
    ref = rows[0]
    title = f"training {args.steps} steps + extracting {rows[0]['rows']} rows"
    table = Table(title=f"{title} (ratios to 'no trim')")
    for col in (
        "variant",
        "train s",
        "x",
        "extract s",
        "x",
        "peak RSS MB",
        "x",
        "RSS at end MB",
        "x",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        r["train_ratio"], r["extract_ratio"] = (
            r["train_s"] / ref["train_s"],
            r["extract_s"] / ref["extract_s"],
        )
        r["peak_ratio"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
        r["end_ratio"] = r["end_rss_mb"] / ref["end_rss_mb"]
        table.add_row(
            r["variant"],
            f"{r['train_s']:.1f}",
            f"{r['train_ratio']:.2f}",
            f"{r['extract_s']:.1f}",
            f"{r['extract_ratio']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_ratio']:.2f}",
            f"{r['end_rss_mb']:.0f}",
            f"{r['end_ratio']:.2f}",
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench_heap.json", rows)
    write_csv(out / "bench_heap.csv", rows)
    console.print(f"saved {out / 'bench_heap.json'} and .csv")
    return rows


if __name__ == "__main__":
    main()
