"""Extraction loops give freed heap memory back (glibc ``malloc_trim``).

Resident memory does not grow with the rows read, and the loops return exactly what the encoder
gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.core import heap
from xmodal.data.arrays import ArrayDataset
from xmodal.encoders.base import create_encoder
from xmodal.evaluation.features import extract_features

# Run in a child: mallopt below fixes glibc's thresholds for the rest of the process.
_HOLES = """
import ctypes, sys
from xmodal.core import heap

def resident_mb():
    with open("/proc/self/status") as status:
        return int(next(x for x in status if x.startswith("VmRSS")).split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: no automatic trim, so only ours returns pages
big, small = [], []
for _ in range(400):  # 100 KB blocks from the heap (below the mmap threshold), each pinned
    block = libc.malloc(100_000)  # in place by a small block allocated after it
    ctypes.memset(block, 1, 100_000)  # touched: resident
    big.append(block)
    small.append(libc.malloc(64))
for block in big:
    libc.free(block)
before = resident_mb()
if sys.argv[1] == "trim":
    assert heap.release_free_heap() is True
print(before - resident_mb())
"""


@pytest.mark.skipif(heap._malloc_trim() is None, reason="no glibc malloc_trim on this system")
@pytest.mark.parametrize("mode", ["trim", "keep"])
def test_freed_holes_in_the_heap_are_returned(mode):
    out = subprocess.run(
        [sys.executable, "-c", _HOLES, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    returned_mb = float(out.stdout)
    if mode == "trim":
        assert returned_mb > 25  # most of the 40 MB of freed holes
    else:
        assert returned_mb < 5  # without it they stay resident: the growth it prevents


def test_release_is_a_no_op_without_glibc(monkeypatch):
    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert heap.release_free_heap() is False
    finally:
        heap._malloc_trim.cache_clear()


def test_extraction_returns_the_encoder_output_and_releases_after_every_batch(monkeypatch):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (21, 8, 8, 3), dtype=torch.uint8)
    data = ArrayDataset({"rgb": images})
    encoder = create_encoder("resnet8", "rgb").train()
    calls = []
    monkeypatch.setattr("xmodal.evaluation.features.release_free_heap", lambda: calls.append(1))
    features = extract_features(encoder, data, batch_size=8)
    assert len(calls) == 3 and encoder.training  # 8 + 8 + 5 rows; its mode restored
    with torch.no_grad():
        expected = encoder.eval()(images)
    assert features.shape == (21, encoder.embed_dim) and torch.allclose(
        features, expected, atol=1e-6
    )
    assert extract_features(encoder, data, rows=slice(5, 5)).shape == (0, encoder.embed_dim)


def test_extraction_reports_progress_and_runs_in_the_callers_autocast():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (21, 16, 16, 3), dtype=torch.uint8)
    data = ArrayDataset({"rgb": images})
    encoder = create_encoder("resnet8", "rgb")
    seen = []
    full = extract_features(
        encoder, data, batch_size=8, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(8, 21), (16, 21), (21, 21)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = extract_features(encoder, data, batch_size=8)
    assert low.dtype == torch.float32 and not torch.equal(low, full)  # computed in bf16
    assert torch.allclose(low, full, atol=0.1, rtol=0.05)
