"""Generate the scenes dataset into one HDF5 file, and validate such a file.

One file holds ``/train``, ``/val`` and ``/test`` groups (rgb, depth, semantic, audio, label,
num_objects) and attributes; bump :data:`FORMAT_VERSION` if that layout changes. Each sample is
seeded by ``(seed, split id, index)``, so it does not depend on split sizes or generation order,
and labels cycle ``index % num_classes`` so every split is class-balanced.

Details (the HDF5 layout readers rely on): docs/data.md.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from xmodal.core.cache import atomic_output
from xmodal.core.deprecation import former_names
from xmodal.core.errors import DataError
from xmodal.data.hdf5_output import hdf5_bytes, hdf5_writing
from xmodal.data.scenes.audio import synthesize_audio
from xmodal.data.scenes.geometry import sample_scene
from xmodal.data.scenes.recipes import CATEGORIES, CLASSES, NUM_CLASSES
from xmodal.data.scenes.render import (
    camera_intrinsics,
    quantize_rgb,
    render_scene,
    sample_camera,
    sample_lighting,
)

FORMAT_NAME = "xmodal-scenes"
FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_IDS: dict[str, int] = {name: i for i, name in enumerate(SPLITS)}
DATASET_KEYS: tuple[str, ...] = ("rgb", "depth", "semantic", "audio", "label", "num_objects")
ATTR_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "config",
    "categories",
    "classes",
    "intrinsics",
    "sample_rate",
)
#: Samples per HDF5 chunk and per write: small chunks keep random per-sample reads cheap.
CHUNK_SAMPLES = 16
#: The highest fundamental is ~1.5 kHz; it must stay below the Nyquist frequency.
MIN_SAMPLE_RATE = 4000

_FIX = "delete it and rerun preprocessing"


@dataclass
class ScenesOptions:
    """Options of the procedural scenes dataset.

    ``image_size``: square image side, pixels. ``num_train/num_val/num_test``: samples per split.
    ``sample_rate``: audio rate, Hz. ``audio_seconds``: clip length, s. ``seed``: base seed.
    ``noise``: RGB noise std (fraction of full scale). ``audio_noise``: audio white-noise std
    (fraction of the clean clip's peak). ``pitch_jitter``: each clip's frequencies are scaled by
    a factor drawn log-uniformly from ``[1/(1+j), 1+j]`` (see ``synthesize_audio``).
    ``num_points``: points per sample of the ``points`` modality, sampled from the depth map
    when the cache is loaded (see :mod:`.points`); the arrays of the cache do not depend on it.
    """

    image_size: int = 32
    num_train: int = 1200
    num_val: int = 200
    num_test: int = 400
    sample_rate: int = 8000
    audio_seconds: float = 0.5
    seed: int = 0
    noise: float = 0.05
    audio_noise: float = 0.2
    pitch_jitter: float = 0.25
    num_points: int = 512

    def __post_init__(self) -> None:
        for name in ("image_size", "num_train", "num_val", "num_test", "num_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ScenesOptions.{name} must be a positive integer, got {value!r}")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            raise ValueError(
                f"ScenesOptions.sample_rate must be an integer (Hz), got {self.sample_rate!r}"
            )
        if self.sample_rate < MIN_SAMPLE_RATE:
            raise ValueError(
                f"ScenesOptions.sample_rate must be >= {MIN_SAMPLE_RATE} Hz so every tone is below "
                f"the Nyquist frequency, got {self.sample_rate}"
            )
        if not self.audio_seconds > 0 or self.num_audio_samples < 1:
            raise ValueError(
                "ScenesOptions.audio_seconds must give at least one audio sample, "
                f"got {self.audio_seconds!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(
                f"ScenesOptions.seed must be a non-negative integer, got {self.seed!r}"
            )
        if not 0 <= self.noise < 1:
            raise ValueError(f"ScenesOptions.noise must be in [0, 1), got {self.noise!r}")
        if not 0 <= self.audio_noise < 10:
            raise ValueError(
                f"ScenesOptions.audio_noise must be in [0, 10), got {self.audio_noise!r}"
            )
        if not 0 <= self.pitch_jitter < 1:
            raise ValueError(
                f"ScenesOptions.pitch_jitter must be in [0, 1), got {self.pitch_jitter!r}"
            )

    @property
    def num_audio_samples(self) -> int:
        """Clip length T in samples."""
        return round(self.sample_rate * self.audio_seconds)

    def split_size(self, split: str) -> int:
        """Number of samples in ``split`` (one of :data:`SPLITS`)."""
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


def generate_sample(config: ScenesOptions, split: str, index: int) -> dict[str, Any]:
    """Sample ``index`` of ``split``: a dict with the per-sample arrays of the HDF5 layout.

    ``rgb`` uint8 ``[H, W, 3]``, ``depth`` float32 ``[H, W]`` (m), ``semantic`` uint8 ``[H, W]``,
    ``audio`` float32 ``[T]``, ``label`` int, ``num_objects`` int.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, SPLIT_IDS[split], index]))
    label = index % NUM_CLASSES
    scene = sample_scene(label, rng)
    camera = sample_camera(rng)
    lighting = sample_lighting(rng)
    view = render_scene(scene, camera, config.image_size, lighting)
    if not np.isfinite(view.depth).all():
        raise RuntimeError(f"{split}[{index}]: a camera ray missed the floor and wall")
    audio = synthesize_audio(
        [o.category for o in scene.objects],
        [o.size for o in scene.objects],
        config.sample_rate,
        config.num_audio_samples,
        config.audio_noise,
        rng,
        pitch_shift=float(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(config.pitch_jitter))),
    )
    return {
        "rgb": quantize_rgb(view.rgb, config.noise, rng),
        "depth": view.depth,
        "semantic": view.semantic,
        "audio": audio,
        "label": label,
        "num_objects": len(scene.objects),
    }


def _file_attrs(config: ScenesOptions) -> dict[str, Any]:
    fx, fy, cx, cy = camera_intrinsics(config.image_size)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "categories": json.dumps(list(CATEGORIES)),
        "classes": json.dumps(list(CLASSES)),
        "intrinsics": json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy}),
        "sample_rate": config.sample_rate,
    }


def _split_shapes(n: int, config: ScenesOptions) -> dict[str, tuple[tuple[int, ...], Any]]:
    s, t = config.image_size, config.num_audio_samples
    return {
        "rgb": ((n, s, s, 3), np.uint8),
        "depth": ((n, s, s), np.float32),
        "semantic": ((n, s, s), np.uint8),
        "audio": ((n, t), np.float32),
        "label": ((n,), np.int64),
        "num_objects": ((n,), np.int64),
    }


def file_bytes(config: ScenesOptions) -> int:
    """The free space to ask for before generating: its arrays plus HDF5's margin.

    See :func:`~xmodal.data.hdf5_output.hdf5_bytes`.
    """
    shapes = [
        shape_dtype
        for split in SPLITS
        for shape_dtype in _split_shapes(config.split_size(split), config).values()
    ]
    return hdf5_bytes(
        sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes)
    )


def _create_split(group: h5py.Group, n: int, config: ScenesOptions) -> None:
    c = min(CHUNK_SAMPLES, n)
    for key, (shape, dtype) in _split_shapes(n, config).items():
        group.create_dataset(key, shape=shape, dtype=dtype, chunks=(c,) + shape[1:])


def generate_scenes(
    path: str | Path,
    config: ScenesOptions,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate every split of ``config`` into the HDF5 file ``path``; return ``path``.

    Writes a temporary file unique to this process first (:func:`xmodal.core.cache.atomic_output`,
    free space checked before with a margin: HDF5 may crash on a full disk) and renames it over
    ``path`` only when complete, so an interrupted run never leaves a partial file at ``path``;
    an HDF5 write error is one OutputError line and removes the temporary file.
    ``progress(done, total)`` is called after every block of :data:`CHUNK_SAMPLES` samples
    (``total`` over all splits).
    """
    total = sum(config.split_size(s) for s in SPLITS)
    done = 0
    needed = file_bytes(config)
    with atomic_output(path, needed=needed) as tmp, hdf5_writing(path, needed):
        with h5py.File(tmp, "w") as f:
            f.attrs.update(_file_attrs(config))
            for split in SPLITS:
                n = config.split_size(split)
                group = f.create_group(split)
                _create_split(group, n, config)
                for start in range(0, n, CHUNK_SAMPLES):
                    samples = [
                        generate_sample(config, split, i)
                        for i in range(start, min(start + CHUNK_SAMPLES, n))
                    ]
                    stop = start + len(samples)
                    for key in DATASET_KEYS:
                        group[key][start:stop] = np.stack([np.asarray(s[key]) for s in samples])
                    done += len(samples)
                    if progress is not None:
                        progress(done, total)
    return Path(path)


def _json_attr(path: Path, attrs: Any, key: str) -> Any:
    try:
        return json.loads(attrs[key])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: attribute {key!r} is not valid JSON ({exc}); {_FIX}") from None


def read_scenes_info(path: str | Path) -> dict[str, Any]:
    """Validate a scenes HDF5 file and return its metadata without loading the arrays.

    Returns ``{"path", "version", "config" (dict), "categories", "classes", "intrinsics",
    "sample_rate", "image_size", "audio_length", "splits" ({split: N})}``. Raises
    :class:`DataError` naming the file and the offending key if the file is missing, not HDF5,
    or not in the expected layout.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"scenes file {path} does not exist; run preprocessing to generate it")
    if not h5py.is_hdf5(path):
        raise DataError(f"scenes file {path} is not an HDF5 file (corrupt or partial); {_FIX}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"scenes file {path} cannot be opened ({exc}); {_FIX}") from None
    with f:
        for key in ATTR_KEYS:
            if key not in f.attrs:
                raise DataError(f"scenes file {path} is missing attribute {key!r}; {_FIX}")
        if f.attrs["format"] != FORMAT_NAME:
            raise DataError(
                f"{path}: attribute 'format' is {f.attrs['format']!r}, expected {FORMAT_NAME!r}; "
                f"{_FIX}"
            )
        if int(f.attrs["version"]) != FORMAT_VERSION:
            raise DataError(
                f"{path}: format version {int(f.attrs['version'])} is not the supported "
                f"{FORMAT_VERSION}; {_FIX}"
            )
        info: dict[str, Any] = {
            "path": path,
            "version": FORMAT_VERSION,
            "config": _json_attr(path, f.attrs, "config"),
            "categories": _json_attr(path, f.attrs, "categories"),
            "classes": _json_attr(path, f.attrs, "classes"),
            "intrinsics": _json_attr(path, f.attrs, "intrinsics"),
            "sample_rate": int(f.attrs["sample_rate"]),
        }
        size = audio_length = None
        splits: dict[str, int] = {}
        for split in SPLITS:
            if split not in f or not isinstance(f[split], h5py.Group):
                raise DataError(f"scenes file {path} is missing group {split!r}; {_FIX}")
            for key in DATASET_KEYS:
                if key not in f[split] or not isinstance(f[split][key], h5py.Dataset):
                    raise DataError(
                        f"scenes file {path} is missing dataset '{split}/{key}'; {_FIX}"
                    )
            g = f[split]
            # Sizes come from the first split; -1 never matches, so a bad rank fails below.
            n = g["label"].shape[0] if g["label"].ndim == 1 else -1
            if size is None:
                size = g["rgb"].shape[1] if g["rgb"].ndim == 4 else -1
            if audio_length is None:
                audio_length = g["audio"].shape[1] if g["audio"].ndim == 2 else -1
            expected = {
                "rgb": ((n, size, size, 3), np.uint8),
                "depth": ((n, size, size), np.float32),
                "semantic": ((n, size, size), np.uint8),
                "audio": ((n, audio_length), np.float32),
                "label": ((n,), np.int64),
                "num_objects": ((n,), np.int64),
            }
            for key, (shape, dtype) in expected.items():
                got = g[key]
                if got.shape != shape or got.dtype != dtype:
                    raise DataError(
                        f"scenes file {path}: dataset '{split}/{key}' has shape {got.shape} "
                        f"{got.dtype}, expected {shape} {np.dtype(dtype)}; {_FIX}"
                    )
            splits[split] = n
    info.update(image_size=size, audio_length=audio_length, splits=splits)
    return info


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"ScenesConfig": "ScenesOptions"}, globals())
