"""Options of the ``paired`` dataset (kept apart so configs import no readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from xmodal.core.checks import at_least, holds, positive, require, within
from xmodal.core.config import AllowRepeats
from xmodal.core.deprecation import former_names


@dataclass
class PairedOptions:
    """Options of the ``paired`` dataset: your own recordings, listed in a manifest.

    Attributes:
        path: the manifest, a ``.csv`` or ``.jsonl`` file with one row per sample (also
            ``xmodal run paired --data manifest.csv``). Columns: one per modality, named after a
            registered front end (``rgb``, ``depth``, ``audio``, a plugin's), holding a file path
            relative to the manifest; optional ``label`` (an integer or a class name), ``split``
            (``train``, ``val`` or ``test``) and ``id`` (then non-empty and unique in every row).
            No row may name one file in two columns.
        image_size: ``[height, width]`` in pixels that images and depth maps are resized to.
        depth_scale: 16-bit depth PNG values per metre (1000: the PNG holds millimetres);
            ``.npy`` depth is read as metres.
        sample_rate: Hz that audio is resampled to.
        audio_seconds: clip length in seconds; longer clips are cropped, shorter ones padded
            with zeros at the end.
        num_points: points sampled (seeded) from each PLY/PCD point cloud.
        val_fraction, test_fraction: shares of the rows held out (seeded by ``seed``) when the
            manifest has no ``split`` column.
        seed: seeds the split and the point sampling.
        classes: class names, index = label; the ``label`` cells are all names or all indices
            into them (a mix is an error). Empty: the labels' own names (sorted), or ``0..max``
            for integer labels.
        on_bad_sample: ``stop`` (default): a row with a missing, unreadable or malformed file,
            an empty cell or a label outside ``classes`` stops preprocessing with one line per
            problem; ``skip``: such rows are left out and counted in the results. The
            manifest-wide rules below are not row problems: ``skip`` does not leave them out.
        ignore_columns: manifest columns that are neither modalities nor ``label``, ``split``,
            ``id`` (notes, timestamps, ...): kept in the file, never read. Any other column that
            names no registered front end is an error.
        allow_duplicates: ``false`` (default): the same file (by resolved path) in two rows of
            a column is an error; ``true``: a warning, and the rows are kept. Either way, rows
            sharing a file must share a split (a seeded split keeps them together; a ``split``
            column that parts them is an error), so no test sample is trained on.
        allow_outside: ``false`` (default): every file must resolve (symbolic links followed)
            inside the manifest's folder; ``true``: paths may lead anywhere (``../``, absolute).
    """

    path: str = ""
    image_size: Annotated[list[int], AllowRepeats] = field(default_factory=lambda: [64, 64])
    depth_scale: float = 1000.0
    sample_rate: int = 16000
    audio_seconds: float = 1.0
    num_points: int = 1024
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    classes: list[str] = field(default_factory=list)
    on_bad_sample: Literal["stop", "skip"] = "stop"
    ignore_columns: list[str] = field(default_factory=list)
    allow_duplicates: bool = False
    allow_outside: bool = False

    def __post_init__(self) -> None:
        require(
            self,
            {
                "image_size": (
                    (lambda v: len(v) == 2 and min(v) >= 1),
                    "[height, width] >= 1 pixel",
                ),
                "depth_scale": positive(),
                "sample_rate": at_least(1),
                "audio_seconds": positive(),
                "num_points": at_least(1),
                "val_fraction": within(0, 1, low_open=True, high_open=True),
                "test_fraction": within(0, 1, low_open=True, high_open=True),
                "seed": at_least(0),
                "on_bad_sample": ((lambda v: v in ("stop", "skip")), "'stop' or 'skip'"),
                "ignore_columns": (
                    (lambda v: not set(v) & {"label", "split", "id"}),
                    "columns other than label, split and id",
                ),
            },
        )
        require(
            self,
            {
                "test_fraction": holds(
                    self.val_fraction + self.test_fraction < 1,
                    "< 1 - val_fraction: some rows must train",
                )
            },
        )
        if round(self.audio_seconds * self.sample_rate) < 1:
            raise ValueError(
                f"PairedOptions: audio_seconds={self.audio_seconds} at "
                f"sample_rate={self.sample_rate} gives no sample"
            )

    @property
    def num_audio_samples(self) -> int:
        """Samples per clip: ``round(audio_seconds * sample_rate)``."""
        return round(self.audio_seconds * self.sample_rate)


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"PairedConfig": "PairedOptions"}, globals())
