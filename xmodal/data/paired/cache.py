"""Convert a validated manifest into a chunked, resumable HDF5 cache.

Layout: one group per split (``train``, ``val``, ``test``), each with a dataset per modality
(``[n, ...]``, one chunk per row), ``label`` (``[n]`` int64, labelled manifests only), ``row``
(``[n]`` the manifest row numbers, from 1) and ``id`` (``[n]`` text: the ``id`` cell, else the
row number). Attributes: ``format``, ``key`` (the manifest's path and SHA-256, the options and
the files' sizes and times, the rows kept),
``classes``, ``labelled``, ``modalities``, ``sample_rate``, ``skipped_rows``
(row numbers left out as bad), ``problems`` (their one-line descriptions) and ``warnings``
(the manifest-wide findings an option allowed, e.g. duplicate files).

As for NYU (:mod:`xmodal.data.nyu.cache`), the cache is written as ``<path>.part`` with a
``rows_done`` counter flushed every few rows; an interrupted conversion resumes there when the
key is unchanged (each row is a pure function of its files, so the result equals an
uninterrupted one), and ``os.replace`` publishes the cache when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from xmodal.core.cache import check_space
from xmodal.data.hdf5_output import hdf5_bytes, hdf5_writing
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.manifest import files_digest, manifest_digest
from xmodal.data.paired.problems import Problem
from xmodal.data.paired.splits import SPLITS
from xmodal.data.paired.validate import Validation, read_row

CACHE_FORMAT = "xmodal-paired-cache"
CACHE_VERSION = 1
#: rows written between flushes of the data and the ``rows_done`` counter
FLUSH_EVERY = 16


def cache_key(validation: Validation, options: PairedOptions) -> dict[str, Any]:
    """What the cache's content depends on (a different key rebuilds it)."""
    manifest = validation.manifest
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k != "path"}
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "manifest": str(manifest.path.resolve()),
        "sha256": manifest_digest(manifest.path),
        "files": files_digest(manifest),
        "options": settings,
        "rows": validation.good_rows,
    }


def build_cache(
    validation: Validation,
    options: PairedOptions,
    cache_path: Path,
    progress: Callable[..., None] | None = None,
) -> Path:
    """Write the validation's good rows into ``cache_path`` (or resume, or reuse).

    ``progress(done, total)`` is called after each row.
    """
    key = cache_key(validation, options)
    if cache_path.is_file() and read_key(cache_path) == key:
        return cache_path
    part = cache_path.with_name(cache_path.name + ".part")
    if part.is_file() and read_key(part) != key:
        part.unlink()  # another manifest, other options or other rows: start over
    rows = validation.good_rows
    places = _places(validation, rows)
    per_row = sum(
        int(np.prod(shape)) * np.dtype(validation.dtypes[m]).itemsize
        for m, shape in validation.shapes.items()
    )
    written = part.stat().st_size if part.is_file() else 0
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    needed = max(0, hdf5_bytes(len(rows) * (per_row + 64)) - written)
    check_space(part, needed)
    with hdf5_writing(cache_path, needed), h5py.File(part, "a") as f:  # .part kept: resumable
        if "rows_done" not in f.attrs:
            _create(f, validation, places, key)
        done = int(f.attrs["rows_done"])
        labels = validation.labels
        for k in range(done, len(rows)):
            number = rows[k]
            split, slot = places[k]
            group = f[split]
            for modality, array in read_row(validation, number, options).items():
                group[modality][slot] = array
            group["row"][slot] = number
            group["id"][slot] = validation.manifest.rows[number - 1].get("id") or str(number)
            if labels is not None:
                group["label"][slot] = labels.values[number - 1]
            if (k + 1) % FLUSH_EVERY == 0 or k + 1 == len(rows):
                f.attrs["rows_done"] = k + 1
                f.flush()
            if progress is not None:
                progress(k + 1, len(rows))
    os.replace(part, cache_path)
    return cache_path


def read_key(path: Path) -> dict[str, Any] | None:
    """The key a cache (or ``.part``) was built for; None when unreadable or torn."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != CACHE_FORMAT or "rows_done" not in f.attrs:
                return None
            key = json.loads(f.attrs["key"])
            return key if isinstance(key, dict) else None
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def _places(validation: Validation, rows: list[int]) -> list[tuple[str, int]]:
    """Each kept row's (split, slot within the split), in manifest order."""
    filled = dict.fromkeys(SPLITS, 0)
    places = []
    for number in rows:
        split = validation.splits[number - 1]
        assert split is not None, number  # a row without a split is a problem: never kept
        places.append((split, filled[split]))
        filled[split] += 1
    return places


def _create(
    f: h5py.File, validation: Validation, places: list[tuple[str, int]], key: dict[str, Any]
) -> None:
    sizes = {split: sum(1 for s, _ in places if s == split) for split in SPLITS}
    for split, n in sizes.items():
        group = f.create_group(split)
        for modality, shape in validation.shapes.items():
            group.create_dataset(
                modality,
                (n, *shape),
                validation.dtypes[modality],
                chunks=(1, *shape) if n else None,
            )
        group.create_dataset("row", (n,), np.int64)
        group.create_dataset("id", (n,), h5py.string_dtype())
        if validation.labels is not None:
            group.create_dataset("label", (n,), np.int64)
    skipped: list[Problem] = sorted(validation.problems, key=lambda p: p.row)
    f.attrs["format"] = CACHE_FORMAT
    f.attrs["key"] = json.dumps(key, sort_keys=True)
    f.attrs["classes"] = json.dumps(validation.labels.class_names if validation.labels else [])
    f.attrs["labelled"] = validation.labels is not None
    f.attrs["modalities"] = json.dumps(list(validation.manifest.modalities))
    f.attrs["sample_rate"] = key["options"]["sample_rate"]
    f.attrs["skipped_rows"] = json.dumps(validation.bad_rows)
    f.attrs["problems"] = json.dumps([str(p) for p in skipped])
    f.attrs["warnings"] = json.dumps([str(w) for w in validation.findings if w.warning])
    f.attrs["rows_done"] = 0
