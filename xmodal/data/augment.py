"""Training-time augmentation of raw modality batches (before the front ends).

Only a left-right mirror for now: it is label-preserving for scene classes and, unlike crops,
keeps every pixel, which matters on NYU's ~715 training frames. The frozen teacher's features
are cached from unmirrored RGB; the student is asked to map both mirror images to them, i.e.
to be mirror-invariant at the pooled level, as the scene label is.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_hflip(images: Tensor, generator: torch.Generator, p: float = 0.5,
                 negate_channel: int | None = None) -> Tensor:
    """Mirror each sample of ``images`` (``[B, H, W]`` or ``[B, H, W, C]``) left-right with
    probability ``p``, drawn from ``generator`` (CPU).

    Args:
        negate_channel: for vector fields in the camera frame (surface normals: channel 0 is
            the x component), the channel whose sign a mirror flips.
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"random_hflip needs [B, H, W] or [B, H, W, C] images, got "
                         f"{list(images.shape)}")
    flip = torch.rand(images.shape[0], generator=generator) < p
    if not flip.any():
        return images
    flip = flip.to(images.device)
    mirrored = images.flip(2)
    if negate_channel is not None:
        if images.ndim != 4:
            raise ValueError("negate_channel needs [B, H, W, C] images")
        mirrored = mirrored.clone()
        mirrored[..., negate_channel] = -mirrored[..., negate_channel]
    shape = (-1,) + (1,) * (images.ndim - 1)
    return torch.where(flip.view(shape), mirrored, images)
