"""Options of the ``paired`` dataset (kept apart so configs import no readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from xmodal.core.checks import at_least, holds, positive, require, within
from xmodal.core.config import AllowRepeats


@dataclass
class PairedConfig:
    """Options of the ``paired`` dataset: your own recordings, listed in a manifest.

    Attributes:
        path: the manifest, a ``.csv`` or ``.jsonl`` file with one row per sample (also
            ``xmodal run paired --data manifest.csv``). Columns: one per modality, named after a
            registered front end (``rgb``, ``depth``, ``audio``, a plugin's), holding a file path
            relative to the manifest; optional ``label`` (an integer or a class name), ``split``
            (``train``, ``val`` or ``test``) and ``id``.
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
        classes: class names, index = label; a ``label`` cell may be a name or an index. Empty:
            the labels' own names (sorted), or ``0..max`` for integer labels.
        on_bad_sample: ``stop`` (default): a row with a missing, unreadable or malformed file,
            an empty cell or a label outside ``classes`` stops preprocessing with one line per
            problem; ``skip``: such rows are left out and counted in the results.
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

    def __post_init__(self) -> None:
        require(self, {
            "image_size": ((lambda v: len(v) == 2 and min(v) >= 1), "[height, width] >= 1 pixel"),
            "depth_scale": positive(), "sample_rate": at_least(1), "audio_seconds": positive(),
            "num_points": at_least(1),
            "val_fraction": within(0, 1, low_open=True, high_open=True),
            "test_fraction": within(0, 1, low_open=True, high_open=True),
            "seed": at_least(0),
            "on_bad_sample": ((lambda v: v in ("stop", "skip")), "'stop' or 'skip'"),
        })
        require(self, {"test_fraction": holds(self.val_fraction + self.test_fraction < 1,
                                              "< 1 - val_fraction: some rows must train")})
        if round(self.audio_seconds * self.sample_rate) < 1:
            raise ValueError(f"PairedConfig: audio_seconds={self.audio_seconds} at "
                             f"sample_rate={self.sample_rate} gives no sample")

    @property
    def num_audio_samples(self) -> int:
        """Samples per clip: ``round(audio_seconds * sample_rate)``."""
        return round(self.audio_seconds * self.sample_rate)
