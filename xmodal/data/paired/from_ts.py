"""A ``paired`` manifest from ``.ts`` archives: each group of dimensions becomes a modality.

``BasicMotions`` (a smart watch: dimensions 0-2 accelerometer, 3-5 gyroscope) becomes a manifest
with an ``accelerometer`` and a ``gyroscope`` column, one ``.npy`` ``[3, T]`` per case and
column, its label, and its split: the archive's own train/test split, with a seeded,
class-stratified share of the train file held out as val.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xmodal.core.errors import DataError
from xmodal.core.registry import FRONTENDS
from xmodal.data.paired.manifest import RESERVED
from xmodal.data.paired.readers import is_sequence
from xmodal.data.paired.ts_format import TsArchive, read_ts


def parse_channels(spec: str) -> list[int]:
    """``"0-2"`` or ``"0,1,2"`` or ``"0-1,4"`` -> ``[0, 1, 2]`` (0-based dimension indices)."""
    out: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        try:
            start, stop = int(first), int(last or first)
        except ValueError:
            raise DataError(
                f"channels {spec!r}: write 0-based dimensions as '0-2' or '0,1,2'"
            ) from None
        if start < 0 or stop < start:
            raise DataError(f"channels {spec!r}: {part.strip()!r} is not an ascending range >= 0")
        out.extend(range(start, stop + 1))
    if len(set(out)) != len(out):
        raise DataError(f"channels {spec!r}: a dimension is listed twice")
    return out


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask ``[N]`` of the rows held out, chosen per class by a seeded permutation.

    ``round(fraction * n)`` rows of each class of ``n``; when ``fraction > 0``, at least one and
    never all of a class of two rows or more.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"a held-out fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    array = np.asarray(labels)
    for name in sorted(set(labels)):
        rows = np.flatnonzero(array == name)
        count = round(fraction * len(rows))
        if fraction > 0 and len(rows) > 1:
            count = min(max(count, 1), len(rows) - 1)
        held[rng.permutation(rows)[:count]] = True
    return held


def write_ts_manifest(
    train: Path,
    out: Path,
    columns: Mapping[str, Sequence[int]] | None = None,
    test: Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    window: int = 0,
) -> Path:
    """Write ``out/manifest.csv`` and ``out/<column>/<id>.npy`` from ``.ts`` files.

    Args:
        train: the archive's train file. Its rows are ``train``, less a class-stratified
            ``val_fraction`` (seeded) held out as ``val``.
        out: a new or empty folder.
        columns: modality name -> 0-based dimensions, e.g. ``{"accelerometer": [0, 1, 2],
            "gyroscope": [3, 4, 5]}``; each becomes a ``[len(dims), T]`` float32 ``.npy`` per case.
            None: one ``sequence`` column of every dimension.
        test: the archive's test file (its rows are ``test``). None: ``test_fraction``.
        val_fraction: the share of each class of the train file's rows held out as ``val``.
        test_fraction: without ``test``, the share of each class held out as ``test`` first.
        seed: seeds both hold-outs.
        window: > 0: cut each case into consecutive, non-overlapping windows of this many steps
            (a trailing remainder is dropped), each a row with its case's label and split, so
            that windows of one recording never straddle splits (HAR practice). 0: whole cases.

    Returns:
        The manifest's path.
    """
    train_set = read_ts(train)
    if columns is None:
        columns = {"sequence": list(range(train_set.values.shape[1]))}
    _check_columns(columns, train_set, train)
    test_set = None
    if test is not None:
        test_set = read_ts(test)
        _check_same_kind(train_set, test_set, train, Path(test))
    length = train_set.values.shape[2]
    if window < 0 or window > length:
        raise DataError(f"window {window}: must be in 0..{length} (the series' length)")
    starts = list(range(0, length - window + 1, window)) if window else [0]
    span = window or length
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty; write the manifest into a new or empty folder")

    splits = np.array(["train"] * len(train_set.labels), dtype=object)
    if test_set is None:
        splits[stratified_holdout(train_set.labels, test_fraction, seed)] = "test"
    remaining = np.flatnonzero(splits == "train")
    held = stratified_holdout([train_set.labels[i] for i in remaining], val_fraction, seed + 1)
    splits[remaining[held]] = "val"

    parts = [("train", train_set, list(splits))]
    if test_set is not None:
        parts.append(("test", test_set, ["test"] * len(test_set.labels)))
    for name in columns:
        (out / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for prefix, archive, row_splits in parts:
        for i, (label, split) in enumerate(zip(archive.labels, row_splits, strict=True)):
            for start in starts:
                case_id = f"{prefix}-{i:05d}" + (f"-w{start:05d}" if window else "")
                row = {"id": case_id, "split": split, "label": label}
                for name, dims in columns.items():
                    file = out / name / f"{case_id}.npy"
                    cut = archive.values[i, list(dims), start : start + span]
                    np.save(file, np.ascontiguousarray(cut))
                    row[name] = f"{name}/{case_id}.npy"
                rows.append(row)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "split", "label", *columns])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _check_columns(columns: Mapping[str, Sequence[int]], archive: TsArchive, path: Path) -> None:
    if not columns:
        raise DataError("no columns: name at least one, e.g. sequence=0-2")
    dims = archive.values.shape[1]
    for name, chosen in columns.items():
        if name in RESERVED:
            raise DataError(f"column {name!r} is reserved in a manifest ({', '.join(RESERVED)})")
        FRONTENDS.check_name(name)  # a misspelt name: one line with the close matches
        if not is_sequence(name):
            raise DataError(
                f"column {name!r}: not a registered sequence front end, so paired would not "
                "read it as a sequence; use sequence, accelerometer, gyroscope or a plugin's "
                "('xmodal list frontends')"
            )
        outside = [d for d in chosen if d >= dims]
        if outside:
            raise DataError(
                f"column {name!r}: dimensions {outside} are outside {path}'s {dims} (0-{dims - 1})"
            )


def _check_same_kind(train: TsArchive, test: TsArchive, train_path: Path, test_path: Path) -> None:
    if train.values.shape[1:] != test.values.shape[1:]:
        raise DataError(
            f"{test_path}: [dimensions, length] {list(test.values.shape[1:])} differs from "
            f"{train_path}'s {list(train.values.shape[1:])}; give both files of one archive"
        )
    if train.classes and test.classes and train.classes != test.classes:
        raise DataError(
            f"{test_path}: @classLabel {test.classes} differs from {train_path}'s "
            f"{train.classes}; give both files of one archive"
        )
