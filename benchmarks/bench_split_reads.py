"""Training-batch reads of the default ``scenes`` cache: what the loader costs per epoch.

    python3 benchmarks/bench_split_reads.py [--cache runs/scenes/data/scenes/data.h5] [--epochs 3]

Reads ``--epochs`` shuffled epochs of the train split in batches of 64, as the training loader
does, for a depth student (input ``depth`` + ``label``), three ways:

- reference: every column streamed from HDF5 (``IN_MEMORY_BYTES = 0``) and every column read,
  ``points`` derived (the loader before columns were selected and kept in memory);
- selected: only ``depth`` and ``label``, still streamed;
- selected + in memory: the default (the split's rows of a column under 256 MiB read once).

Prints CPU seconds per epoch and the ratio of each to the reference. Without ``--cache`` it
generates the default scenes data into a temporary folder first (about 20 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _epochs(split, keys, epochs: int) -> float:
    from xmodal.data.arrays import make_loader

    data = split if keys is None else split.select(keys)
    start = time.process_time()
    for epoch in range(epochs):
        for _ in make_loader(data, 64, shuffle=True, seed=epoch, drop_last=True):
            pass
    return (time.process_time() - start) / epochs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="a scenes data.h5")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    import xmodal.data.hdf5_split as hdf5_split
    from xmodal.data.scenes.generate import ScenesOptions, generate_scenes
    from xmodal.data.scenes_source import ScenesSource

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache
        if cache is None:
            cache = Path(tmp) / "data.h5"
            options = ScenesOptions(image_size=32, num_train=1200, num_val=200, num_test=400)
            generate_scenes(cache, options)
        ways = [
            ("reference: all columns, streamed", None, 0),
            ("depth + label, streamed", ["depth", "label"], 0),
            ("depth + label, in memory (default)", ["depth", "label"], hdf5_split.IN_MEMORY_BYTES),
        ]
        rows = []
        for name, keys, budget in ways:
            hdf5_split.IN_MEMORY_BYTES = budget
            train = ScenesSource().load(cache).splits["train"]  # a fresh split: no memory kept
            rows.append({"loader": name, "cpu_s_per_epoch": _epochs(train, keys, args.epochs)})
    reference = rows[0]["cpu_s_per_epoch"]
    table = Table(title=f"Train-split reads, scenes default data ({args.epochs} epochs, batch 64)")
    for column in ("loader", "CPU s / epoch", "reference / this"):
        table.add_column(column, justify="left" if column == "loader" else "right")
    for row in rows:
        row["speedup"] = reference / row["cpu_s_per_epoch"]
        table.add_row(row["loader"], f"{row['cpu_s_per_epoch']:.3f}", f"{row['speedup']:.1f}x")
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
