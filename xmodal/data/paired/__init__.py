"""The ``paired`` dataset: your own recordings, one manifest row per sample.

:class:`~xmodal.data.paired.config.PairedOptions` describes the manifest's layout.
:mod:`.manifest` reads the CSV/JSONL file, :mod:`.rules` checks it as a whole (known columns,
non-empty unique ids, unique files, one file per column of a row, one kind of label, paths
inside its folder, splits that share no file) before any file is read, :mod:`.labels` and
:mod:`.splits` give each row its class and split, :mod:`.readers` turn each file into its cached
array, :mod:`.validate` reads every row once and reports problems by row and column
(:mod:`.problems`), and :mod:`.cache` writes the good rows into a resumable HDF5 cache.
"""

from xmodal.core.deprecation import former_names
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.manifest import Manifest, read_manifest
from xmodal.data.paired.problems import Problem
from xmodal.data.paired.validate import Validation, validate_manifest

__all__ = [
    "Manifest",
    "PairedOptions",
    "Problem",
    "Validation",
    "read_manifest",
    "validate_manifest",
]

#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"PairedConfig": "PairedOptions"}, globals())
