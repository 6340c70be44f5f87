"""Preprocess ``nyu_depth_v2_labeled.mat`` into a compact, resumable HDF5 cache.

Per frame, streamed: crop the valid (non-padded) region, compute the depth encodings at the
cropped full resolution (normals and heights need the real geometry), then resize everything
to ``image_size``: RGB and HHA by area averaging, metric depth, surface normals (open3d or
finite differences, :mod:`xmodal.data.depth_encodings`) and height above the estimated floor by
area averaging over valid pixels only (holes stay 0), labels by nearest neighbour. One HDF5
chunk per frame. The cache is written as ``<path>.part`` with a manifest (source size, mtime,
content fingerprint, options) and a ``frames_done`` counter flushed every frame; an interrupted
run resumes from that counter, and because each frame is a pure function of the source, the
finished cache equals an uninterrupted one. ``os.replace`` publishes it when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from xmodal.core.cache import check_space
from xmodal.core.errors import DataError
from xmodal.core.heap import release_free_heap
from xmodal.data.depth_encodings import Intrinsics, encode_depth, valid_depth
from xmodal.data.hdf5_output import hdf5_bytes, hdf5_writing
from xmodal.data.nyu.config import NYUDepthOptions
from xmodal.data.nyu.facts import load_nyu_facts
from xmodal.data.nyu.reader import NYULabeledFile

CACHE_FORMAT = "xmodal-nyu-cache"
CACHE_VERSION = 2


def source_fingerprint(path: Path, block: int = 1 << 20) -> dict[str, Any]:
    """Size, mtime and a SHA-256 of the first and last MiB of the labeled file.

    Cheap, and it changes when the file is replaced or truncated (hashing 2.8 GB every run
    would cost a minute).
    """
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(block))
        f.seek(max(0, stat.st_size - block))
        digest.update(f.read(block))
    return {"size": stat.st_size, "mtime": int(stat.st_mtime), "sha256_ends": digest.hexdigest()}


def _resize(array: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize ``[H, W]`` or ``[H, W, C]`` to ``size`` with torch's ``area`` or ``nearest``."""
    t = torch.from_numpy(np.ascontiguousarray(array)).float()
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(t, size=size, mode=mode)[0]
    out = out[0] if array.ndim == 2 else out.permute(1, 2, 0)
    return out.numpy()


def _resize_valid(array: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average ``array`` (``[H, W]`` or ``[H, W, C]``) over ``valid`` ``[H, W]`` pixels only.

    Holes must not pull values towards 0. Output pixels under half covered by valid input
    are 0.
    """
    weight = _resize(valid.astype(np.float32), size, "area")
    if array.ndim == 3:
        valid, weight = valid[..., None], weight[..., None]
    total = _resize(np.where(valid, array, 0).astype(np.float32), size, "area")
    return np.where(weight > 0.5, total / np.maximum(weight, 1e-6), 0).astype(np.float32)


def process_frame(frame: Any, facts: Any, config: NYUDepthOptions) -> dict[str, np.ndarray]:
    """One source frame -> its cached arrays at ``config.image_size`` (see module docstring).

    ``rgb`` uint8 [h, w, 3], ``depth`` float32 metres (0 = missing), ``normals`` int8
    [h, w, 3] (127 x unit normal, camera frame, 0 = unknown), ``height`` float32 metres above
    the estimated floor (0 = unknown), ``hha`` uint8 [h, w, 3], ``labels40`` uint8.
    """
    top, bottom, left, right = facts.valid_crop
    size = (config.image_size[0], config.image_size[1])
    crop = (slice(top, bottom + 1), slice(left, right + 1))
    depth = np.asarray(frame.depth, np.float32)[crop]
    fx, fy, cx, cy = facts.intrinsics
    K = Intrinsics(fx, fy, cx, cy).cropped(top, left)
    enc = encode_depth(depth, K, normals_method=config.normals)
    has_normal = np.isfinite(enc.normals).all(axis=-1)
    normals = _resize_valid(np.nan_to_num(enc.normals), has_normal, size)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.where(norm > 1e-6, normals / np.maximum(norm, 1e-6), 0)  # re-unit after averaging
    return {
        "rgb": np.clip(np.rint(_resize(frame.rgb[crop], size, "area")), 0, 255).astype(np.uint8),
        "depth": _resize_valid(depth, valid_depth(depth), size),
        "normals": np.rint(normals * 127).astype(np.int8),
        "height": _resize_valid(np.nan_to_num(enc.height), np.isfinite(enc.height), size),
        "hha": np.clip(np.rint(_resize(enc.hha, size, "area")), 0, 255).astype(np.uint8),
        "labels40": _resize(
            facts.labels40(frame.labels[crop]).astype(np.float32), size, "nearest"
        ).astype(np.uint8),
    }


def _manifest(source: Path, config: NYUDepthOptions) -> dict[str, Any]:
    options = {k: v for k, v in dataclasses.asdict(config).items() if k != "path"}
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "source": str(source.resolve()),
        "fingerprint": source_fingerprint(source),
        "options": options,
    }


def require_source(config: NYUDepthOptions) -> Path:
    """The configured labeled file, or one DataError saying where to get it and how to pass it."""
    if not config.path:
        raise DataError(
            "nyu-depth needs the labeled file nyu_depth_v2_labeled.mat (2.8 GB): get "
            "it with 'xmodal data download nyu-depth --to DIR', then pass --data PATH "
            "(or set data.nyu_depth.path) with PATH = DIR/nyu_depth_v2_labeled.mat"
        )
    source = Path(config.path)
    if not source.is_file():
        raise DataError(
            f"NYU file '{source}' does not exist; pass the path of "
            "nyu_depth_v2_labeled.mat (see 'xmodal data download nyu-depth')"
        )
    return source


def build_cache(
    config: NYUDepthOptions, cache_path: Path, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Build (or resume, or reuse) the cache for ``config.path`` at ``cache_path``."""
    source = require_source(config)
    manifest = _manifest(source, config)
    if cache_path.is_file() and _read_manifest(cache_path) == manifest:
        return cache_path
    facts = load_nyu_facts()
    part = cache_path.with_name(cache_path.name + ".part")
    if part.is_file() and _read_manifest(part) != manifest:
        part.unlink()  # built from another file or other options: start over
    with NYULabeledFile(source) as nyu:
        if (nyu.height, nyu.width) != tuple(facts.image_size):
            # The valid crop and the intrinsics are those of the 480 x 640 Kinect frames.
            raise DataError(
                f"NYU file '{source}' has {nyu.height} x {nyu.width} frames; the "
                f"labeled set's are {facts.image_size[0]} x {facts.image_size[1]} "
                "(crop and camera intrinsics assume them): use the official "
                "nyu_depth_v2_labeled.mat"
            )
        total = len(nyu) if not config.max_frames else min(len(nyu), config.max_frames)
        split = _split_of(facts, total, config)
        h, w = config.image_size
        # HDF5 may crash on a full disk: check the space first (one resumable .part per run
        # directory; the run lock keeps a second job out)
        written = part.stat().st_size if part.is_file() else 0
        needed = max(0, _cache_bytes(total, h, w) - written)
        check_space(part, needed)
        with hdf5_writing(cache_path, needed), h5py.File(part, "a") as f:  # .part kept: resumable
            if "rgb" not in f:
                _create(f, total, h, w, manifest)
            done = int(f.attrs["frames_done"])
            for i in range(done, total):
                frame = nyu.frame(i)
                arrays = process_frame(frame, facts, config)
                for key, value in arrays.items():
                    f[key][i] = value
                f["scene10"][i] = facts.scene10(frame.scene_type)
                f["split"][i] = split[i]
                f.attrs["frames_done"] = i + 1
                f.flush()
                release_free_heap()  # keeps peak memory flat over 1449 frames
                if progress:
                    progress(i + 1, total)
            f.attrs["names40"] = json.dumps(list(facts.names40))
            f.attrs["scene10_names"] = json.dumps(list(facts.scene10_names))
    os.replace(part, cache_path)
    return cache_path


def _cache_bytes(n: int, h: int, w: int) -> int:
    """The space a finished cache takes: the arrays :func:`_create` makes plus HDF5's margin."""
    per_pixel = 3 + 3 + 4 + 3 + 4 + 1  # rgb, hha, depth, normals, height, labels40
    return hdf5_bytes(n * (h * w * per_pixel + 8 + 1))


def _split_of(facts: Any, total: int, config: NYUDepthOptions) -> np.ndarray:
    """0 = train, 1 = val (seeded hold-out of the official train split), 2 = test."""
    split = np.full(total, 2, dtype=np.uint8)
    train = np.asarray([i for i in facts.train_indices if i < total])
    split[train] = 0
    rng = np.random.default_rng(config.seed)
    held = rng.choice(train, size=max(1, round(config.val_fraction * len(train))), replace=False)
    split[held] = 1
    return split


def _create(f: h5py.File, n: int, h: int, w: int, manifest: dict[str, Any]) -> None:
    f.create_dataset("rgb", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3))
    f.create_dataset("hha", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3))
    f.create_dataset("depth", (n, h, w), np.float32, chunks=(1, h, w))
    f.create_dataset("normals", (n, h, w, 3), np.int8, chunks=(1, h, w, 3))
    f.create_dataset("height", (n, h, w), np.float32, chunks=(1, h, w))
    f.create_dataset("labels40", (n, h, w), np.uint8, chunks=(1, h, w))
    f.create_dataset("scene10", (n,), np.int64)
    f.create_dataset("split", (n,), np.uint8)
    f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)
    f.attrs["frames_done"] = 0


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        with h5py.File(path, "r") as f:
            if "frames_done" not in f.attrs:
                return None
            manifest = json.loads(f.attrs["manifest"])
            return manifest if isinstance(manifest, dict) else None
    except (OSError, KeyError, json.JSONDecodeError):
        return None  # unreadable or torn: rebuild
