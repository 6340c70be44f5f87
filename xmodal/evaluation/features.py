"""Feature extraction from a frozen encoder, once, under ``inference_mode``."""

from __future__ import annotations

import torch
from torch import Tensor

from xmodal.data.arrays import Rows, SplitData
from xmodal.encoders.base import Encoder


@torch.inference_mode()
def extract_features(encoder: Encoder, dataset: SplitData, batch_size: int = 256,
                     device: torch.device | str = "cpu", rows: slice = slice(None)) -> Tensor:
    """Pooled embeddings ``[N, D]`` (float32, on CPU) of ``dataset[encoder.modality][rows]``.

    The encoder is put in eval mode (BatchNorm uses running statistics) and restored after.
    """
    was_training = encoder.training
    encoder.eval().to(device)
    inputs = Rows(dataset, encoder.modality, rows)  # read a batch at a time
    chunks = [encoder(inputs[i:i + batch_size].to(device)).float().cpu()
              for i in range(0, len(inputs), batch_size)]
    encoder.train(was_training)
    return torch.cat(chunks)
