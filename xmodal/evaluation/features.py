"""Feature extraction from a frozen encoder, once, under ``inference_mode``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xmodal.core.heap import release_free_heap
from xmodal.data.arrays import Rows, SplitData
from xmodal.encoders.base import Encoder
from xmodal.encoders.memory_format import channels_last as channels_last_weights


@torch.inference_mode()
def extract_features(
    encoder: Encoder,
    dataset: SplitData,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    rows: slice = slice(None),
    progress: Callable[[int, int], None] | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Pooled embeddings ``[N, D]`` (float32, on CPU) of ``dataset[encoder.modality][rows]``.

    The encoder is put in eval mode (BatchNorm uses running statistics) and restored after.
    ``progress(done, total)`` is called after each batch (rows). Runs in the caller's autocast
    (e.g. bf16 under ``accelerator.autocast()``); the features are returned in float32.
    ``channels_last``: hold 2-D convolution weights channels-last meanwhile (faster, less exact on
    CPU; see
    :func:`~xmodal.encoders.memory_format.channels_last`).
    """
    was_training = encoder.training
    encoder.eval().to(device)
    inputs = Rows(dataset, encoder.modality, rows)  # read a batch at a time
    out: Tensor | None = None
    try:
        with channels_last_weights(encoder, channels_last):
            for i in range(0, len(inputs), batch_size):
                batch = encoder(inputs[i : i + batch_size].to(device)).float().cpu()
                if out is None:  # one allocation for all rows, not one kept chunk per batch
                    out = torch.empty((len(inputs), *batch.shape[1:]))
                out[i : i + len(batch)] = batch
                if progress is not None:
                    progress(i + len(batch), len(inputs))
                release_free_heap()  # else resident memory grows with rows read (core.heap)
    finally:
        encoder.train(was_training)
    if out is None:  # no rows: the encoder's output shape from an empty batch
        out = encoder(inputs[0:0].to(device)).float().cpu()
    return out
