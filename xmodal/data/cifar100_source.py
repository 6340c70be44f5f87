"""CIFAR-100 as a registered dataset source, ``cifar100``.

It is the compression setting of the WCoRD paper (resnet32x4 -> resnet8x4 on the same RGB
images).

The files are read with torchvision's reader (``torchvision.datasets.CIFAR100``) from the
folder that holds ``cifar-100-python/`` (``train``, ``test``, ``meta``: pickled batches, the
official format), downloaded there first where there is network (``download``). Preparation
copies the images (uint8 ``[N, 32, 32, 3]``) and fine labels into the run's HDF5 cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from xmodal.core.cache import atomic_output
from xmodal.core.checks import at_least, require
from xmodal.core.deprecation import former_names
from xmodal.core.errors import DataError
from xmodal.core.registry import DATASETS
from xmodal.data.arrays import SplitData
from xmodal.data.hdf5_output import hdf5_bytes, hdf5_writing
from xmodal.data.hdf5_split import HDF5Split, as_long
from xmodal.data.source import LoadedDataset, Section, human_bytes

__all__ = ["CIFAR100Options", "CIFAR100Source"]

_FOLDER = "cifar-100-python"
_FILES = ("train", "test", "meta")


@dataclass
class CIFAR100Options:
    """Options of the ``cifar100`` dataset.

    Attributes:
        path: the folder holding (or to receive) ``cifar-100-python/``; also
            ``xmodal run cifar100 --data DIR``.
        download: fetch the archive with torchvision when the files are missing (needs network).
        verify_md5: check the files against torchvision's published MD5 sums (off only for
            hand-made test folders in the same format).
        max_train, max_test: keep only the first N images of a split (0 = all), for trials.
    """

    path: str = ""
    download: bool = True
    verify_md5: bool = True
    max_train: int = 0
    max_test: int = 0

    def __post_init__(self) -> None:
        require(self, {"max_train": at_least(0), "max_test": at_least(0)})


def _reader(verify_md5: bool) -> Any:
    """Torchvision's CIFAR100 class, or a subclass that checks presence instead of MD5 sums."""
    from torchvision.datasets import CIFAR100

    if verify_md5:
        return CIFAR100

    class UncheckedCIFAR100(CIFAR100):  # type: ignore[misc]  # torchvision is untyped here
        train_list = [[name, None] for name, _ in CIFAR100.train_list]
        test_list = [[name, None] for name, _ in CIFAR100.test_list]
        meta = {**CIFAR100.meta, "md5": None}

    return UncheckedCIFAR100


def _root(options: CIFAR100Options) -> Path:
    if not options.path:
        raise DataError(
            "cifar100: no data folder; pass --data DIR (the folder holding "
            f"{_FOLDER}/, or an empty one to download into)"
        )
    return Path(options.path).expanduser()


@DATASETS.register("cifar100")
class CIFAR100Source:
    """CIFAR-100: 32x32 RGB images, 100 fine classes, 50 000 train / 10 000 test."""

    name = "cifar100"
    modalities = ("rgb",)
    options = CIFAR100Options

    def fingerprint(self, options: CIFAR100Options) -> dict[str, object]:
        """Size and mtime of each file (part of the data unit's cache key).

        Empty before the download.
        """
        folder = _root(options) / _FOLDER
        return {
            name: [(folder / name).stat().st_size, int((folder / name).stat().st_mtime)]
            for name in _FILES
            if (folder / name).is_file()
        }

    def prepare(
        self,
        options: CIFAR100Options,
        cache_path: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Copy the official files (downloaded first with ``download``) into ``cache_path``."""
        root = _root(options)
        reader = _reader(options.verify_md5)
        splits = {}
        try:
            for i, (split, limit) in enumerate(
                (("train", options.max_train), ("test", options.max_test))
            ):
                data = reader(str(root), train=split == "train", download=options.download)
                n = limit or len(data.data)
                splits[split] = (
                    np.ascontiguousarray(data.data[:n]),
                    np.asarray(data.targets[:n], np.int64),
                )
                classes = list(data.classes)
                if progress is not None:
                    progress(i + 1, 2)
        except (RuntimeError, OSError) as exc:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"cifar100: cannot read {root / _FOLDER} ({exc}); put the official "
                f"cifar-100-python files there or set data.cifar100.download=true "
                "where there is network"
            ) from None
        names = json.dumps(classes)
        needed = hdf5_bytes(sum(a.nbytes for pair in splits.values() for a in pair) + len(names))
        # a temporary name unique to this process, free space checked first (HDF5 may crash on
        # a full disk), an HDF5 write error one line: as data.h5 is written
        with atomic_output(cache_path, needed=needed) as tmp, hdf5_writing(cache_path, needed):
            with h5py.File(tmp, "w") as f:
                for split, (images, labels) in splits.items():
                    f.create_dataset(f"{split}/rgb", data=images)
                    f.create_dataset(f"{split}/label", data=labels)
                f.attrs["classes"] = names
        return cache_path

    def load(self, cache_path: Path) -> LoadedDataset:
        """The train and test splits streamed from the cache, with the 100 fine class names."""
        try:
            splits: dict[str, SplitData] = {
                split: HDF5Split(
                    cache_path,
                    {"rgb": f"{split}/rgb", "label": f"{split}/label"},
                    transforms={"label": as_long},
                )
                for split in ("train", "test")
            }
            with h5py.File(cache_path, "r") as f:
                classes = json.loads(f.attrs["classes"])
        except (OSError, KeyError) as exc:
            raise DataError(
                f"cifar100 cache '{cache_path}' is unreadable ({exc}); delete it and rerun"
            ) from None
        return LoadedDataset(splits=splits, num_classes=len(classes), class_names=classes)

    def describe_file(
        self,
        path: Path,
        options: CIFAR100Options,
        progress: Callable[..., None] | None = None,
    ) -> list[Section] | None:
        """Describe a cifar100 cache written by ``prepare``, for ``xmodal data info``.

        Images per split and the classes with their counts; None for any other file.
        """
        try:
            with h5py.File(path, "r") as f:
                if set(f) != {"train", "test"} or "classes" not in f.attrs or "format" in f.attrs:
                    return None
                classes = json.loads(f.attrs["classes"])
                labels = {split: f[split]["label"][()] for split in ("train", "test")}
                shape = f["train"]["rgb"].shape[1:]
        except (OSError, KeyError, ValueError):  # not HDF5, or another layout
            return None
        overview = [
            ["file", str(path)],
            ["format", "xmodal cifar100 cache"],
            ["size", human_bytes(path.stat().st_size)],
            ["rows", ", ".join(f"{len(v)} {split}" for split, v in labels.items())],
            ["image size", " x ".join(map(str, shape)) + " uint8 (H x W x RGB)"],
            ["labels", f"fine class per row ({len(classes)} classes)"],
        ]
        counts = {split: np.bincount(v, minlength=len(classes)) for split, v in labels.items()}
        rows = [[name, *(str(counts[s][i]) for s in counts)] for i, name in enumerate(classes)]
        return [
            ("cifar100 dataset cache", ["", ""], overview),
            ("classes per split", ["class", *counts], rows),
        ]


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"CIFAR100Config": "CIFAR100Options"}, globals())
