"""Audio of a scene: every object rings once with a decaying harmonic tone.

An object of category ``c`` and size ``s`` (m) sounds at fundamental
``f0 = BASE_FREQUENCY[c] * sqrt(REFERENCE_SIZE / s)`` Hz (bigger is lower, like a struck bar),
with harmonics ``k * f0`` weighted by the category's ``HARMONIC_PROFILE`` (fundamental always the
strongest) and an exponential envelope with the category's decay time. Onsets are random within
the first ``ONSET_FRACTION`` of the clip. The clip is the sum over objects plus white noise,
peak-normalised into [-1, 1]. Time is in samples at ``sample_rate`` Hz.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.data.scenes.recipes import NUM_CATEGORIES

#: Fundamental at the reference size, Hz, per category: geometric spacing (ratio ~1.45) over
#: 180-1150 Hz, so sizes in the dataset's range (0.25-0.55 m) keep categories mostly apart.
BASE_FREQUENCY: tuple[float, ...] = (180.0, 261.0, 378.0, 548.0, 794.0, 1150.0)
REFERENCE_SIZE: float = 0.4  # metres

#: Relative amplitude of harmonics 1..6 per category (a timbre). Harmonic 1 is always the largest.
HARMONIC_PROFILE: np.ndarray = np.array(
    [
        [1.0, 0.0, 0.5, 0.0, 0.3, 0.0],  # box: odd harmonics, hollow
        [1.0, 0.1, 0.0, 0.0, 0.0, 0.0],  # sphere: almost pure
        [1.0, 0.5, 0.33, 0.25, 0.2, 0.17],  # cylinder: sawtooth-like
        [1.0, 0.7, 0.2, 0.5, 0.0, 0.1],  # cone
        [1.0, 0.0, 0.0, 0.6, 0.0, 0.0],  # torus: bell-like
        [1.0, 0.6, 0.6, 0.0, 0.0, 0.0],  # pyramid
    ]
)
#: Exponential decay time constant per category, seconds.
DECAY_SECONDS: tuple[float, ...] = (0.08, 0.25, 0.15, 0.10, 0.35, 0.12)
#: Onsets fall in the first this-fraction of the clip so every tone is heard for a while.
ONSET_FRACTION: float = 0.4
#: Harmonics at or above this fraction of the sample rate are dropped (no aliasing).
MAX_FREQUENCY_FRACTION: float = 0.45

assert len(BASE_FREQUENCY) == len(DECAY_SECONDS) == HARMONIC_PROFILE.shape[0] == NUM_CATEGORIES


def fundamental_frequency(category: int, size: float) -> float:
    """Fundamental frequency (Hz) of an object of ``category`` with largest side ``size`` (m)."""
    return BASE_FREQUENCY[category] * float(np.sqrt(REFERENCE_SIZE / size))


def synthesize_audio(
    categories: Sequence[int] | np.ndarray,
    sizes: Sequence[float] | np.ndarray,
    sample_rate: int,
    num_samples: int,
    noise: float,
    rng: np.random.Generator,
    pitch_shift: float = 1.0,
) -> np.ndarray:
    """One clip for the objects ``categories[i]`` of size ``sizes[i]`` (m).

    ``pitch_shift`` scales every frequency of the clip (a scene-wide factor, like a room's
    resonance or a recorder's speed error): categories then overlap in absolute pitch and are
    told apart by timbre and by the ratios between objects, not by one frequency band.

    Returns float32 ``[num_samples]`` at ``sample_rate`` Hz with peak absolute value 1 (all zeros
    only if there are no objects and ``noise`` is 0). White noise has standard deviation ``noise``
    times the clean clip's peak.
    """
    categories = np.asarray(categories, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.float64)
    n = len(categories)
    t = np.arange(num_samples) / sample_rate  # [T] seconds

    f0 = pitch_shift * np.array(
        [fundamental_frequency(c, s) for c, s in zip(categories, sizes, strict=True)]
    ).reshape(n)
    harmonics = np.arange(1, HARMONIC_PROFILE.shape[1] + 1)
    freqs = f0[:, None] * harmonics[None, :]  # [n, K] Hz
    amps = HARMONIC_PROFILE[categories] * (freqs < MAX_FREQUENCY_FRACTION * sample_rate)
    # Bigger objects ring louder; the jitter keeps loudness from encoding size exactly.
    loudness = rng.uniform(0.5, 1.0, size=n) * sizes / REFERENCE_SIZE  # [n]
    phases = rng.uniform(0.0, 2 * np.pi, size=freqs.shape)  # [n, K]
    onsets = rng.uniform(0.0, ONSET_FRACTION * num_samples / sample_rate, size=n)  # [n] s
    decay = np.asarray(DECAY_SECONDS)[categories]  # [n] s

    local = t[None, :] - onsets[:, None]  # [n, T] seconds since onset
    envelope = np.where(local >= 0, np.exp(-np.maximum(local, 0) / decay[:, None]), 0.0)
    partials = np.sin(2 * np.pi * freqs[:, :, None] * local[:, None, :] + phases[:, :, None])
    tones = np.einsum("nk,nkt->nt", amps, partials) * envelope * loudness[:, None]
    clip = tones.sum(axis=0)

    peak = np.abs(clip).max() if n else 1.0
    clip = clip + noise * peak * rng.standard_normal(num_samples)
    peak = np.abs(clip).max()
    if peak > 0:
        clip = clip / peak
    samples: np.ndarray = clip.astype(np.float32)
    return samples
