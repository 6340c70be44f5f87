"""The WAV reader of ``paired``: integer PCM against the standard library's ``wave``.

Float and extensible WAVs against values written by hand, and each way a file can be wrong.
"""

from __future__ import annotations

import re
import struct
import wave

import numpy as np
import pytest

from xmodal.core.errors import DataError
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.readers import SampleError, read_audio
from xmodal.data.paired.wav import WavError, read_wav


def _riff(fmt: bytes, data: bytes, extra_chunks: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def _extensible(sub_tag: int, channels: int, rate: int, bits: int) -> bytes:
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return (
        _fmt(0xFFFE, channels, rate, bits)
        + struct.pack("<HHI", 22, bits, 3)
        + struct.pack("<H", sub_tag)
        + guid_tail
    )


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_integer_pcm_matches_the_standard_library(tmp_path, width):
    rng = np.random.default_rng(width)
    raw = rng.integers(0, 256, size=2 * 37 * width, dtype=np.uint8).tobytes()  # 2 channels
    with wave.open(str(tmp_path / "a.wav"), "wb") as clip:
        clip.setnchannels(2)
        clip.setsampwidth(width)
        clip.setframerate(11025)
        clip.writeframes(raw)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 11025 and samples.shape == (2, 37) and samples.dtype == np.float32
    # reference: the same bytes as signed integers (8-bit is unsigned), full scale = 2^(bits-1)
    if width == 1:
        expected = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif width == 3:
        expected = (
            np.array(
                [
                    int.from_bytes(raw[i : i + 3], "little", signed=True)
                    for i in range(0, len(raw), 3)
                ]
            )
            / 2.0**23
        )
    else:
        expected = np.frombuffer(raw, f"<i{width}").astype(np.float64) / 2.0 ** (8 * width - 1)
    assert np.allclose(samples, expected.reshape(-1, 2).T, atol=1e-7)
    assert samples.min() >= -1 and samples.max() <= 1


@pytest.mark.parametrize("bits", [32, 64])
def test_float_wav_reads_back_the_written_values(tmp_path, bits):
    values = np.array([[0.0, 0.5, -0.25, 1.0], [0.125, -1.0, 0.75, -0.5]])  # [C, T]
    frames = values.T.astype("<f4" if bits == 32 else "<f8").tobytes()
    (tmp_path / "f.wav").write_bytes(_riff(_fmt(3, 2, 22050, bits), frames))
    samples, rate = read_wav(tmp_path / "f.wav")
    assert rate == 22050 and np.array_equal(samples, values.astype(np.float32))


def test_extensible_header_and_unknown_chunks_are_followed(tmp_path):
    values = np.array([0.5, -0.5, 0.25], np.float32)
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd size: one pad byte
    (tmp_path / "x.wav").write_bytes(_riff(_extensible(3, 1, 8000, 32), values.tobytes(), odd))
    samples, rate = read_wav(tmp_path / "x.wav")
    assert rate == 8000 and np.array_equal(samples[0], values)
    pcm = np.array([-32768, 0, 16384], "<i2")
    (tmp_path / "p.wav").write_bytes(_riff(_extensible(1, 1, 8000, 16), pcm.tobytes()))
    assert np.array_equal(read_wav(tmp_path / "p.wav")[0][0], [-1.0, 0.0, 0.5])


def test_a_streamed_wav_without_its_data_size_reads_to_the_end(tmp_path):
    pcm = np.array([1000, -1000, 2000, -2000, 4000], "<i2")
    content = bytearray(_riff(_fmt(1, 1, 8000, 16), pcm.tobytes()))
    content[-len(pcm.tobytes()) - 4 : -len(pcm.tobytes())] = b"\xff\xff\xff\xff"
    (tmp_path / "s.wav").write_bytes(bytes(content))
    assert np.array_equal(read_wav(tmp_path / "s.wav")[0][0], pcm / 32768)


def test_float_wav_goes_through_read_audio(tmp_path):
    tone = (0.5 * np.sin(2 * np.pi * 250 * np.arange(4000) / 8000)).astype("<f4")
    (tmp_path / "t.wav").write_bytes(_riff(_fmt(3, 1, 8000, 32), tone.tobytes()))
    audio = read_audio(tmp_path / "t.wav", PairedOptions(sample_rate=8000, audio_seconds=0.25))
    assert np.array_equal(audio, tone[:2000])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"OggS" + b"\x00" * 40, "not a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "no 'fmt ' chunk"),
        (
            _riff(_fmt(1, 1, 8000, 16), b"\x00" * 100)[:-50],
            "the data chunk promises 100 bytes, the file holds 50",
        ),
        (_riff(_fmt(2, 1, 8000, 4), b"\x00" * 8), "format tag 2 (compressed?)"),
        (_riff(_fmt(1, 1, 8000, 12), b"\x00" * 8), "inconsistent header"),
        (_riff(_fmt(3, 1, 8000, 16), b"\x00" * 8), "16-bit float samples"),
    ],
)
def test_bad_wavs_say_what_is_wrong(tmp_path, content, message):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(WavError, match=re.escape(message)):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(SampleError, match="cannot decode the WAV file: .*" + re.escape(message)):
        read_audio(tmp_path / "bad.wav", PairedOptions())


def test_flac_without_a_decoder_says_how_to_get_one(tmp_path, monkeypatch):
    import torchaudio

    def no_decoder(*args, **kwargs):
        raise ImportError("TorchCodec is required for load")

    monkeypatch.setattr(torchaudio, "load", no_decoder)
    (tmp_path / "a.flac").write_bytes(b"fLaC")
    with pytest.raises(
        DataError,
        match=r"'\.flac' audio needs torchaudio's decoder.*pip install "
        r"torchcodec; it needs FFmpeg.*convert the files to WAV",
    ):
        read_audio(tmp_path / "a.flac", PairedOptions())
