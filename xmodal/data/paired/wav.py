"""A WAV reader without a decoder library.

It reads integer PCM (8/16/24/32-bit) and IEEE float (32/64-bit), plain or
``WAVE_FORMAT_EXTENSIBLE``.

The standard library's ``wave`` reads integer PCM only, and torchaudio >= 2.9 decodes through
torchcodec and FFmpeg, which a fresh machine often lacks; float WAVs (what numpy/soundfile
pipelines usually write) would then need both. A WAV is a RIFF file of chunks, so reading one is
a few lines: ``fmt `` says the encoding, ``data`` holds interleaved frames.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
STREAMED = 0xFFFFFFFF  # the data size a streaming writer (e.g. FFmpeg to a pipe) leaves


class WavError(Exception):
    """A file that is not a WAV this reader can decode; the message says why."""


def read_wav(file: Path) -> tuple[np.ndarray, int]:
    """WAV file -> ``([C, T] float32 samples, in [-1, 1] for PCM), sample rate in Hz)``."""
    data = Path(file).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file (corrupt, or another format named .wav?)")
    fmt, frames = None, None
    pos = 12
    while pos + 8 <= len(data):
        name, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if name == b"fmt ":
            fmt = body
        elif name == b"data":
            if size == STREAMED:  # written before its length was known: the rest of the file
                body = data[pos + 8 :]
                size = len(body)
            if len(body) < size:
                raise WavError(
                    f"the data chunk promises {size} bytes, the file holds {len(body)} (truncated?)"
                )
            frames = body
            break
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    if fmt is None or len(fmt) < 16:
        raise WavError("no 'fmt ' chunk before the samples (corrupt?)")
    if frames is None:
        raise WavError("no 'data' chunk (truncated?)")
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE:
        if len(fmt) < 26:
            raise WavError("WAVE_FORMAT_EXTENSIBLE header is too short (corrupt?)")
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the tag
    if tag not in (PCM, IEEE_FLOAT):
        raise WavError(f"WAV format tag {tag} (compressed?); expected integer PCM or IEEE float")
    if channels < 1 or rate < 1 or block != channels * ((bits + 7) // 8):
        raise WavError(
            f"inconsistent header: {channels} channels, {rate} Hz, {bits}-bit, "
            f"{block} bytes per frame"
        )
    usable = len(frames) - len(frames) % block
    samples = _decode(frames[:usable], tag, bits)
    return np.ascontiguousarray(samples.reshape(-1, channels).T), rate


def _decode(raw: bytes, tag: int, bits: int) -> np.ndarray:
    """Interleaved sample bytes -> float32 ``[T * C]``."""
    if tag == IEEE_FLOAT and bits in (32, 64):
        return np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32)
    if tag == IEEE_FLOAT:
        raise WavError(f"{bits}-bit float samples; expected 32 or 64-bit")
    if bits == 8:  # unsigned, centred on 128
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    if bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return (value / float(1 << 23)).astype(np.float32)
    if bits in (16, 32):
        value = np.frombuffer(raw, "<i2" if bits == 16 else "<i4").astype(np.float64)
        return (value / float(1 << (bits - 1))).astype(np.float32)
    raise WavError(f"{bits}-bit PCM samples; expected 8, 16, 24 or 32-bit")
