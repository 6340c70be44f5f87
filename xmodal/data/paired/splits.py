"""Each manifest row's split: its ``split`` cell, or seeded fractions of all rows.

Without a ``split`` column, a seeded permutation of every row of the manifest (bad rows
included) picks ``test_fraction`` of them for test and ``val_fraction`` for val, at least one
each: a row's split depends on the seed and the row count only, not on which rows are bad.
Rows that must stay together (sharing a file, with ``data.paired.allow_duplicates``) take the
split of the first of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.data.paired.manifest import Manifest
from xmodal.data.paired.problems import Problem

SPLITS = ("train", "val", "test")


def assign_splits(
    manifest: Manifest,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    together: Sequence[Sequence[int]] = (),
) -> tuple[list[str | None], list[Problem]]:
    """One split per row (``None`` where the cell is not a split) and the rows with bad cells.

    A ``split`` cell is bad when empty or unknown. ``together``: groups of row numbers (from 1)
    that a seeded split keeps in one split (a ``split`` column is taken as written).
    """
    n = len(manifest.rows)
    if "split" in manifest.columns:
        splits: list[str | None] = []
        problems = []
        for i, row in enumerate(manifest.rows):
            cell = (row.get("split") or "").lower()
            if cell in SPLITS:
                splits.append(cell)
            else:
                splits.append(None)
                given = row.get("split")
                what = f"split {given!r}" if given else "no split (empty cell)"
                problems.append(Problem(i + 1, "split", f"{what}: must be train, val or test"))
        return splits, problems
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    seeded: list[str | None] = ["train"] * n
    for i in order[:n_test]:
        seeded[i] = "test"
    for i in order[n_test : n_test + n_val]:
        seeded[i] = "val"
    for group in together:
        first = min(group)
        for number in group:
            seeded[number - 1] = seeded[first - 1]
    return seeded, []
