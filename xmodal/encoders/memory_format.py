"""Channels-last weights for 2-D convolutions, held for the span of a computation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def channels_last(module: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Store ``module``'s 4-D weights channels-last (``[O, I, kH, kW]`` laid out as NHWC) inside.

    oneDNN and cuDNN then run its 2-D convolutions in their native layout: a ResNet-8 training
    step (batch 64, 32x32) takes about 30% less CPU time. On CPU the price is exactness: a depth
    student's gradients differ from a float64 reference about 500 times more than in the
    contiguous layout, and PyTorch's channels-last batch norm alone has about 120 times the
    contiguous kernel's error (both in ``benchmarks/bench_channels_last.py``; that the batch norm
    causes the first is a hypothesis).
    The contiguous layout is restored on exit, so saved weights keep the usual strides. A module
    without 4-D weights, or ``enabled=False``, is left as it is.
    """
    if not enabled or not any(p.dim() == 4 for p in module.parameters()):
        yield module
        return
    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs omit it
    try:
        yield module
    finally:
        module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # as above
