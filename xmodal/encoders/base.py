"""The encoder interface every modality encoder implements.

An :class:`Encoder` is a modality front end followed by a backbone. ``forward`` returns the
pooled embedding ``[B, D]``; ``forward_features`` returns the feature map of every stage
(``[B, C_i, H_i, W_i]``, coarsest last) for dense probes and feature-level baselines.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES, FRONTENDS


class Backbone(Protocol):
    """What a registered backbone factory returns: a module with per-stage feature maps."""

    out_dim: int
    stage_channels: list[int]

    def forward_features(self, x: Tensor) -> list[Tensor]: ...


class Encoder(nn.Module):
    """Front end + backbone + global average pooling.

    Attributes:
        modality: the input modality name (``"rgb"``, ``"depth"``, ``"audio"``, ...).
        embed_dim: size ``D`` of the pooled embedding.
        stage_channels: channels of each stage's feature map.
    """

    def __init__(self, modality: str, frontend: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.modality = modality
        self.frontend = frontend
        self.backbone = backbone
        self.embed_dim: int = backbone.out_dim
        self.stage_channels: list[int] = list(backbone.stage_channels)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Raw modality input -> list of stage feature maps ``[B, C_i, H_i, W_i]``."""
        return self.backbone.forward_features(self.frontend(x))

    def forward(self, x: Tensor) -> Tensor:
        """Raw modality input -> pooled embedding ``[B, D]``."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.forward_features(x)[-1], 1), 1)


def create_encoder(name: str, modality: str, frontend_kwargs: dict | None = None,
                   **backbone_kwargs: object) -> Encoder:
    """Build a registered backbone ``name`` behind the front end of ``modality``.

    Example: ``create_encoder("resnet8", "depth")``, or
    ``create_encoder("resnet18", "rgb", pretrained="imagenet")``.
    """
    frontend = FRONTENDS.get(modality)(**(frontend_kwargs or {}))
    try:
        backbone = BACKBONES.get(name)(in_channels=frontend.out_channels, **backbone_kwargs)
    except TypeError as exc:
        raise XmodalError(f"encoder '{name}': bad arguments {sorted(backbone_kwargs)}: {exc}") from None
    return Encoder(modality, frontend, backbone)
