"""Layer 1: datasets (embedded ``scenes``; real-data readers), cached and loaded as arrays."""

from xmodal.data import (
    cifar100_source,  # noqa: F401  (registers ``cifar100``)
    nyu_source,  # noqa: F401  (registers ``nyu-depth``)
    paired_source,  # noqa: F401  (registers ``paired``)
    scenes_source,  # noqa: F401  (registers the ``scenes`` dataset)
)
from xmodal.data.arrays import ArrayDataset, make_loader
from xmodal.data.source import DatasetSource, LoadedDataset

__all__ = ["ArrayDataset", "DatasetSource", "LoadedDataset", "make_loader"]
