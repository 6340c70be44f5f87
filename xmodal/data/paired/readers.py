"""Readers of one manifest cell's file, by modality and file type, into the cached array.

- ``rgb``: PNG or JPEG (torchvision.io), 3 channels, resized to ``image_size`` ->
  ``[H, W, 3]`` uint8 (16-bit PNGs are scaled to 8 bits).
- ``depth``: a single-channel 16-bit PNG in units of ``1 / depth_scale`` metres (0 = no
  depth), or a ``.npy`` ``[H, W]`` in metres; resized by averaging valid pixels only ->
  ``[H, W]`` float32 metres.
- ``audio``: WAV (8/16/24/32-bit integer PCM or 32/64-bit float, read by :mod:`.wav`) or FLAC
  and other formats through torchaudio (which needs torchcodec and FFmpeg), mixed to mono,
  resampled to ``sample_rate``, cropped or zero-padded at the end to ``audio_seconds`` -> ``[T]``
  float32 in [-1, 1].
- point clouds (``points``, or any ``.ply``/``.pcd`` file): PLY or PCD through open3d, or a
  ``.npy`` ``[M, 3]``; ``num_points`` sampled, seeded by the seed and the row -> ``[N, 3]``
  float32.
- sequences (``sequence``, or any column whose front end has the ``sequence`` layout, e.g. a
  plugin's ``imu``): a ``.npy`` ``[C, T]`` (channels first) of finite numbers -> ``[C, T]``
  float32; every row of a column has the same ``[C, T]``. :func:`sequence_frontend_kwargs`
  gives their front ends ``C`` and per-channel statistics of the train split.
- any other column: a ``.npy`` array (floats -> float32), as stored.

A file that cannot be used raises :class:`SampleError` with what is wrong; the validation pass
reports it with its row and column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from xmodal.core.errors import DataError
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.wav import WavError, read_wav

IMAGE_TYPES = (".png", ".jpg", ".jpeg")
AUDIO_TYPES = (".wav", ".flac", ".ogg", ".mp3")
POINT_TYPES = (".ply", ".pcd")


class SampleError(Exception):
    """One file that cannot be used as its column's data; the message says why."""


Reader = Callable[[Path, PairedOptions, int], np.ndarray]


def read_rgb(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """PNG/JPEG -> ``[H, W, 3]`` uint8 at ``options.image_size``."""
    _require_type(file, IMAGE_TYPES, "rgb", "PNG or JPEG")
    image = _decode_image(file)  # [C, H, W]
    if image.shape[0] != 3:
        raise SampleError(f"{image.shape[0]} channel(s); rgb needs 3 (an RGB image, no alpha)")
    if image.dtype == torch.uint16:
        image = (image.float() / 257.0).round()
    height, width = options.image_size
    if tuple(image.shape[1:]) != (height, width):
        image = torch.nn.functional.interpolate(
            image[None].float(),
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
    return image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def read_depth(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """Depth -> ``[H, W]`` float32 metres at ``options.image_size``; 0 = no depth.

    A 16-bit PNG holds ``value / depth_scale`` metres, a ``.npy`` metres.
    """
    _require_type(file, (".png", ".npy"), "depth", "a 16-bit PNG or a .npy in metres")
    if file.suffix.lower() == ".npy":
        depth = _load_npy(file)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise SampleError(f"shape {list(depth.shape)}; a depth .npy must be [H, W] metres")
        if not np.issubdtype(depth.dtype, np.number):
            raise SampleError(f"dtype {depth.dtype}; a depth .npy holds numbers (metres)")
        metres = depth.astype(np.float32)
    else:
        image = _decode_image(file)
        if image.shape[0] != 1:
            raise SampleError(
                f"{image.shape[0]} channels; a depth PNG has 1 (16-bit, units of "
                f"1/{options.depth_scale:g} m)"
            )
        if image.dtype != torch.uint16:
            raise SampleError(
                "an 8-bit PNG; a depth PNG is 16-bit (units of "
                f"1/{options.depth_scale:g} m), e.g. millimetres"
            )
        metres = image[0].numpy().astype(np.float32) / np.float32(options.depth_scale)
    return resize_depth(metres, (options.image_size[0], options.image_size[1]))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` metres -> ``size``, averaging valid (finite, > 0) pixels only.

    So holes do not pull depth towards 0; output pixels less than half covered by valid input
    are 0.
    """
    valid = np.isfinite(depth) & (depth > 0)
    if depth.shape == size:
        return np.where(valid, depth, 0).astype(np.float32)
    planes = torch.from_numpy(np.stack([np.where(valid, depth, 0), valid]).astype(np.float32))
    total, weight = torch.nn.functional.interpolate(planes[None], size=size, mode="area")[0]
    return torch.where(weight > 0.5, total / weight.clamp_min(1e-6), 0).numpy().astype(np.float32)


def read_audio(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """WAV/FLAC -> mono ``[T]`` float32 at ``options.sample_rate``, ``T = num_audio_samples``."""
    _require_type(file, AUDIO_TYPES, "audio", "WAV or FLAC")
    samples, rate = _decode_audio(file)  # [C, T]
    if samples.shape[-1] == 0:
        raise SampleError("no audio samples")
    mono = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).mean(0)
    if not torch.isfinite(mono).all():
        raise SampleError("audio samples are NaN or infinite")
    if rate != options.sample_rate:
        import torchaudio

        mono = torchaudio.functional.resample(mono, rate, options.sample_rate)
    length = options.num_audio_samples
    mono = mono[:length]
    if len(mono) < length:
        mono = torch.nn.functional.pad(mono, (0, length - len(mono)))
    return mono.numpy().astype(np.float32)


def read_points(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """PLY/PCD (open3d) or ``.npy`` ``[M, 3]`` -> ``[N, 3]`` float32, ``N = num_points``.

    A seeded sample without replacement (all points, then repeats, when ``M < N``).
    """
    _require_type(file, (*POINT_TYPES, ".npy"), "points", "PLY, PCD or a .npy [M, 3]")
    if file.suffix.lower() == ".npy":
        points = _load_npy(file)
        if points.ndim != 2 or points.shape[1] != 3:
            raise SampleError(f"shape {list(points.shape)}; a point .npy must be [M, 3]")
    else:
        points = _read_point_cloud(file)
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        raise SampleError("no points (an empty or unreadable point cloud)")
    if not np.isfinite(points).all():
        raise SampleError("point coordinates are NaN or infinite")
    rng = np.random.default_rng([options.seed, row])
    n, m = options.num_points, len(points)
    pick = (
        rng.choice(m, n, replace=False)
        if m >= n
        else np.concatenate([np.arange(m), rng.choice(m, n - m)])
    )
    return points[pick].astype(np.float32)


def read_sequence(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """A ``.npy`` ``[C, T]`` (channels first, finite numbers) -> ``[C, T]`` float32."""
    _require_type(file, (".npy",), "a sequence", "a .npy [C, T], channels first")
    array = _load_npy(file)
    if array.ndim != 2:
        hint = " (one channel: save it as [1, T])" if array.ndim == 1 else ""
        raise SampleError(
            f"shape {list(array.shape)}; a sequence .npy must be [C, T], channels first{hint}"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise SampleError(f"dtype {array.dtype}; a sequence .npy holds numbers")
    if array.shape[1] == 0:
        raise SampleError(f"shape {list(array.shape)}: no time steps")
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise SampleError("NaN or infinite values (fill gaps before writing the .npy)")
    return values


def read_array(file: Path, options: PairedOptions, row: int = 0) -> np.ndarray:
    """A ``.npy`` array, as stored (floats as float32, booleans as uint8)."""
    _require_type(file, (".npy",), "this column", ".npy")
    array = _load_npy(file)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.number):
        raise SampleError(f"dtype {array.dtype}; a .npy column holds numbers")
    return array


READERS: dict[str, Reader] = {
    "rgb": read_rgb,
    "depth": read_depth,
    "audio": read_audio,
    "points": read_points,
}
"""The reader of each modality with a known file type; other columns are ``.npy`` arrays."""


def reader_for(modality: str, file: Path) -> Reader:
    """The reader for ``file`` in column ``modality``."""
    if modality in READERS:
        return READERS[modality]
    if is_sequence(modality):
        return read_sequence
    if file.suffix.lower() in POINT_TYPES:
        return read_points
    return read_array


def is_sequence(modality: str) -> bool:
    """Whether ``modality``'s registered front end takes sequences (the ``sequence`` layout)."""
    from xmodal.core.registry import FRONTENDS, UnknownNameError

    try:
        return getattr(FRONTENDS.get(modality), "layout", "image") == "sequence"
    except UnknownNameError:  # reported by the manifest rules, with the column
        return False


def sequence_frontend_kwargs(
    cache_path: Path, modalities: Iterable[str], chunk: int = 256
) -> dict[str, dict[str, Any]]:
    """The facts of each sequence column of a paired cache, for its front end's options.

    ``channels`` ``C`` and the per-channel ``mean`` and ``std`` over every step of every train
    row (two passes of float64 sums in row order: the same cache gives the same numbers), each
    only when the front end takes that option. A channel that is constant (std within float32
    rounding of its magnitude) gets std 1.
    """
    facts: dict[str, dict[str, Any]] = {}
    with h5py.File(cache_path, "r") as f:
        for modality in modalities:
            if not is_sequence(modality):
                continue
            data = f[f"train/{modality}"]  # [n, C, T] float32
            n, channels, steps = (int(d) for d in data.shape)
            count = max(1, n * steps)
            blocks = [slice(start, start + chunk) for start in range(0, n, chunk)]
            total, peak = np.zeros(channels), np.zeros(channels)
            for rows in blocks:
                block = np.asarray(data[rows], dtype=np.float64)
                total += block.sum(axis=(0, 2))
                peak = np.maximum(peak, np.abs(block).max(axis=(0, 2)))
            mean = total / count
            squares = np.zeros(channels)
            for rows in blocks:
                block = np.asarray(data[rows], dtype=np.float64)
                squares += np.square(block - mean[:, None]).sum(axis=(0, 2))
            std = np.sqrt(squares / count)
            std = np.where(std > 1e-7 * peak, std, 1.0)
            found = {
                "channels": channels,
                "mean": [float(m) for m in mean],
                "std": [float(s) for s in std],
            }
            taken = _options_taken(modality)  # a plugin's front end may take none of them
            facts[modality] = {k: v for k, v in found.items() if k in taken}
    return facts


def _options_taken(modality: str) -> set[str]:
    """The options of ``modality``'s front end (its ``options`` dataclass, or its signature's)."""
    import dataclasses

    from xmodal.core.registry import FRONTENDS

    options = FRONTENDS.options_type(modality)
    return {f.name for f in dataclasses.fields(options)} if options is not None else set()


def expected_shape(modality: str, options: PairedOptions) -> tuple[int, ...] | None:
    """The cached shape of one sample of ``modality`` (None: set by the first good row)."""
    height, width = options.image_size
    return {
        "rgb": (height, width, 3),
        "depth": (height, width),
        "audio": (options.num_audio_samples,),
        "points": (options.num_points, 3),
    }.get(modality)


def _require_type(file: Path, suffixes: tuple[str, ...], what: str, expected: str) -> None:
    if file.suffix.lower() not in suffixes:
        raise SampleError(
            f"'{file.suffix or file.name}' files cannot be read as {what} (expected {expected})"
        )


def _decode_image(file: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        image: torch.Tensor = decode_image(read_file(str(file)), mode=ImageReadMode.UNCHANGED)
        return image
    except RuntimeError as exc:
        raise SampleError(f"cannot decode the image (corrupt or truncated?): {exc}") from None


#: the first bytes of every file ``numpy.save`` writes
NPY_MAGIC = b"\x93NUMPY"


def _load_npy(file: Path) -> np.ndarray:
    try:
        with open(file, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:  # else numpy reads it as a pickle and blames allow_pickle
            raise SampleError("not a .npy file (no NumPy header); write it with numpy.save")
        array: np.ndarray = np.load(file, allow_pickle=False)
        return array
    except (ValueError, OSError, EOFError) as exc:
        raise SampleError(f"cannot read the .npy array (corrupt or truncated?): {exc}") from None


def _decode_audio(file: Path) -> tuple[np.ndarray, int]:
    """``([C, T] float samples, rate in Hz)`` of an audio file.

    WAV (integer PCM or float) with our own reader, anything else (FLAC, ...) through
    torchaudio.
    """
    if file.suffix.lower() == ".wav":
        try:
            return read_wav(file)
        except WavError as exc:
            raise SampleError(f"cannot decode the WAV file: {exc}") from None
        except OSError as exc:
            raise SampleError(f"cannot read the WAV file: {exc}") from None
    import torchaudio

    try:
        samples, rate = torchaudio.load(str(file))
    except ImportError as exc:  # torchaudio >= 2.9 decodes through torchcodec (and FFmpeg)
        raise DataError(
            f"reading '{file.suffix}' audio needs torchaudio's decoder: {exc} "
            "(pip install torchcodec; it needs FFmpeg), or convert the files to "
            "WAV"
        ) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for a bad file
        raise SampleError(f"cannot decode the audio (corrupt?): {exc}") from None
    return samples.numpy(), int(rate)


def _read_point_cloud(file: Path) -> np.ndarray:
    import open3d as o3d

    with open(file, "rb") as handle:
        head = handle.read(256)
    if file.suffix.lower() == ".ply" and not head.startswith(b"ply"):
        raise SampleError("not a PLY file (its first line is not 'ply')")
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(
            str(file),  # type: ignore[arg-type]  # stubs say PathLike; str works in every version
            format=file.suffix.lower()[1:],
        )
    return np.asarray(cloud.points)
