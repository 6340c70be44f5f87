"""Training-time augmentation of raw modality batches (before the front ends).

A left-right mirror: it is label-preserving for scene classes and, unlike crops, keeps every
pixel, which matters on NYU's ~715 training frames. And CIFAR's padded random crop, for the
compression setting. The frozen teacher's features
are cached from unmirrored RGB; the student is asked to map both mirror images to them, i.e.
to be mirror-invariant at the pooled level, as the scene label is.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_hflip(
    images: Tensor, generator: torch.Generator, p: float = 0.5, negate_channel: int | None = None
) -> Tensor:
    """Mirror each sample of ``images`` left-right with probability ``p``.

    Args:
        images: ``[B, H, W]`` or ``[B, H, W, C]``.
        generator: the (CPU) generator the coin flips are drawn from.
        p: probability of mirroring a sample.
        negate_channel: for vector fields in the camera frame (surface normals: channel 0 is
            the x component), the channel whose sign a mirror flips.
    """
    if images.ndim not in (3, 4):
        raise ValueError(
            f"random_hflip needs [B, H, W] or [B, H, W, C] images, got {list(images.shape)}"
        )
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


def random_crop(images: Tensor, generator: torch.Generator, padding: int) -> Tensor:
    """Cut a random ``H x W`` window per sample from ``images`` zero-padded by ``padding``.

    ``images`` is ``[B, H, W]`` or ``[B, H, W, C]``, padded by ``padding`` pixels on each side;
    the offsets are drawn from ``generator`` (CPU): the ``RandomCrop(32, padding=4)`` of CIFAR
    training recipes.
    """
    if images.ndim not in (3, 4):
        raise ValueError(
            f"random_crop needs [B, H, W] or [B, H, W, C] images, got {list(images.shape)}"
        )
    if padding == 0:
        return images
    b, h, w = images.shape[:3]
    pad = (
        (0, 0, padding, padding, padding, padding)
        if images.ndim == 4
        else (padding, padding, padding, padding)
    )
    padded = torch.nn.functional.pad(images, pad)
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[i, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets)])
