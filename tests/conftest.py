"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Tiny tensors run on one intra-op thread: it is faster, and does not spin on shared CPUs.

    The two CPUs are shared; two threads under load made the objective tests about 7x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
