"""Lazy reader of ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5 behind a 512-byte header).

MATLAB stores arrays column-major, so h5py sees every axis reversed: ``images`` is
``(N, 3, W, H)`` and ``images[i].transpose(2, 1, 0)`` is the ``(H, W, 3)`` picture; the per-pixel
maps are ``(N, W, H)``; ``accelData`` is ``(4, N)``. Strings (``names``, ``scenes``,
``sceneTypes``) are cells: object references to ``(len, 1)`` uint16 datasets of UTF-16 code
units. ``H`` and ``W`` are read from the file (480 x 640 for the real one) so small test files
in the same layout work too. Every access reads one frame's slice; nothing loads a whole array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from xmodal.core.errors import DataError
from xmodal.data.depth_encodings.backproject import valid_depth_mask  # noqa: F401  (public)
from xmodal.data.hdf5 import open_hdf5

PIXEL_KEYS = ("depths", "rawDepths", "labels", "instances")
STRING_KEYS = ("names", "scenes", "sceneTypes")
REQUIRED_KEYS = ("images", *PIXEL_KEYS, "accelData", *STRING_KEYS)
_GET_IT = "fetch nyu_depth_v2_labeled.mat (again) with 'xmodal data download nyu-depth'"


@dataclass(frozen=True, eq=False)
class NYUFrame:
    """One labeled frame, in image orientation (rows = height ``H``, columns = width ``W``).

    Attributes:
        index: 0-based frame index in the file.
        rgb: ``[H, W, 3]`` uint8.
        depth: ``[H, W]`` float32 metres, holes filled by the dataset's colourisation.
        raw_depth: ``[H, W]`` float32 metres as measured; 0 = missing.
        labels: ``[H, W]`` uint16, 0 = unlabeled, 1..894 index ``names()``.
        instances: ``[H, W]`` uint8 instance id within a class.
        scene: scene id, e.g. ``"bedroom_0001"``.
        scene_type: scene type as spelled in the data, e.g. ``"bedroom"``.
        accel: ``[4]`` float64 accelerometer reading (roll, yaw, pitch, tilt).
    """

    index: int
    rgb: np.ndarray
    depth: np.ndarray
    raw_depth: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    scene: str
    scene_type: str
    accel: np.ndarray


def _decode(f: h5py.File, ref: h5py.Reference) -> str:
    """A MATLAB char cell entry -> str (UTF-16 code units; bytes-as-ASCII would leave NULs)."""
    target = f[ref]
    if target.attrs.get("MATLAB_empty", 0) or target.size == 0:
        return ""  # MATLAB writes '' as a placeholder holding its shape, not characters
    return "".join(map(chr, np.asarray(target[()]).ravel(order="F")))


def _is_ref(dataset: h5py.Dataset) -> bool:
    return h5py.check_dtype(ref=dataset.dtype) is not None


def _open(path: Path) -> h5py.File:
    """Open ``path`` read-only as HDF5, turning every way that fails into a DataError."""
    return open_hdf5(
        path,
        "the reader needs the labeled set nyu_depth_v2_labeled.mat saved as "
        f"MATLAB v7.3 (HDF5); {_GET_IT}",
        label="NYU file ",
    )


def _check_layout(f: h5py.File, path: Path) -> tuple[int, int, int]:
    """Check required keys, kinds and shapes; return ``(frames, height, width)``."""
    for key in REQUIRED_KEYS:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise DataError(
                f"NYU file '{path}' has no dataset '{key}'; it is not the labeled "
                f"set (keys found: {sorted(k for k in f if not k.startswith('#'))}); "
                f"{_GET_IT}"
            )
    images = f["images"]
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(
            f"NYU file '{path}' key 'images' has h5py shape {images.shape}, expected "
            f"(frames, 3, width, height); {_GET_IT}"
        )
    if images.dtype != np.uint8:
        raise DataError(
            f"NYU file '{path}' key 'images' has dtype {images.dtype}, expected "
            f"uint8 RGB; {_GET_IT}"
        )
    n, _, w, h = images.shape
    expected: dict[str, tuple[int, ...]] = {key: (n, w, h) for key in PIXEL_KEYS}
    expected.update({"accelData": (4, n), "scenes": (1, n), "sceneTypes": (1, n)})
    for key, shape in expected.items():
        found = f[key].shape
        # Cells may be stored as a row or a column; both hold the same references.
        if found != shape and not (key in STRING_KEYS and found == shape[::-1]):
            raise DataError(
                f"NYU file '{path}' key '{key}' has h5py shape {found}, expected "
                f"{shape} to match 'images' {images.shape} (MATLAB axes reversed); "
                f"{_GET_IT}"
            )
    for key in REQUIRED_KEYS:
        is_ref = _is_ref(f[key])
        if is_ref != (key in STRING_KEYS) or (not is_ref and f[key].dtype.kind not in "uifb"):
            want = "a cell of strings" if key in STRING_KEYS else "a numeric array"
            raise DataError(
                f"NYU file '{path}' key '{key}' has dtype {f[key].dtype}, expected "
                f"{want}; {_GET_IT}"
            )
    return n, h, w


def validate(path: str | Path) -> dict[str, Any]:
    """Check that ``path`` is the labeled NYU file in the expected layout, without reading data.

    Returns a summary: ``path``, ``file_size`` (bytes), ``frames``, ``height`` and ``width``
    (pixels), and ``keys``: for each top-level dataset its h5py ``shape`` (MATLAB axes reversed)
    and ``dtype``. Raises DataError naming the file (and key) otherwise.
    """
    path = Path(path)
    with _open(path) as f:
        n, h, w = _check_layout(f, path)
        keys = {
            k: {"shape": list(f[k].shape), "dtype": str(f[k].dtype)}
            for k in sorted(f)
            if not k.startswith("#") and isinstance(f[k], h5py.Dataset)
        }
    return {
        "path": str(path),
        "file_size": path.stat().st_size,
        "frames": n,
        "height": h,
        "width": w,
        "keys": keys,
    }


class NYULabeledFile:
    """``nyu_depth_v2_labeled.mat`` opened read-only; ``frame(i)`` reads only frame ``i``.

    Use as a context manager (``with NYULabeledFile(path) as nyu: nyu.frame(0)``) or call
    :meth:`close`. Opening validates the layout (see :func:`validate`) and raises DataError.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = _open(self.path)
        try:
            self.frames, self.height, self.width = _check_layout(self._file, self.path)
        except DataError:
            self._file.close()
            raise

    def __enter__(self) -> NYULabeledFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __len__(self) -> int:
        return self.frames

    def _read(self, key: str, index: tuple[Any, ...]) -> np.ndarray:
        """``f[key][index]``: a corrupt chunk becomes a DataError naming file, key and index."""
        try:
            values: np.ndarray = self._file[key][index]
            return values
        except OSError as exc:
            raise DataError(
                f"NYU file '{self.path}' key '{key}' could not be read at {index} "
                f"({exc}); the file is damaged: {_GET_IT}"
            ) from None

    def _string(self, key: str, i: int) -> str:
        ref = self._read(key, (0, i) if self._file[key].shape[0] == 1 else (i, 0))
        return _decode(self._file, ref)

    def _strings(self, key: str) -> list[str]:
        return [_decode(self._file, ref) for ref in self._read(key, ()).ravel()]

    def frame(self, i: int) -> NYUFrame:
        """Frame ``i`` (0-based; negative counts from the end) as a :class:`NYUFrame`."""
        if not -self.frames <= i < self.frames:
            raise IndexError(f"frame {i} out of range for {self.frames} frames in '{self.path}'")
        i = int(i) % self.frames

        def pixels(key: str, dtype: type) -> np.ndarray:
            # Stored (W, H): transpose to (H, W); cast because dtypes differ between releases.
            return np.ascontiguousarray(self._read(key, (i,)).T, dtype=dtype)

        return NYUFrame(
            index=i,
            rgb=np.ascontiguousarray(self._read("images", (i,)).transpose(2, 1, 0), np.uint8),
            depth=pixels("depths", np.float32),
            raw_depth=pixels("rawDepths", np.float32),
            labels=pixels("labels", np.uint16),
            instances=pixels("instances", np.uint8),
            scene=self._string("scenes", i),
            scene_type=self._string("sceneTypes", i),
            accel=np.asarray(self._read("accelData", (slice(None), i)), np.float64),
        )

    def names(self) -> list[str]:
        """The class names; label ``k`` (1..894 in the real file) is ``names()[k - 1]``."""
        return self._strings("names")

    def scene_types(self) -> list[str]:
        """Scene type of every frame, in frame order (e.g. ``"bedroom"``)."""
        return self._strings("sceneTypes")

    def scenes(self) -> list[str]:
        """Scene id of every frame, in frame order (e.g. ``"bedroom_0001"``)."""
        return self._strings("scenes")
