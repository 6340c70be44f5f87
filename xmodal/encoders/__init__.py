"""Layer 2: modality encoders (front end + backbone), created by name from the registry."""

from xmodal.encoders import (  # noqa: F401  (imported to register; libraries load lazily)
    cifar_resnet,
    frontends,
    hf_backbone,
    open_clip_backbone,
    pointnet,
    temporal_conv,
    timm_backbone,
    torchvision_resnet,
)
from xmodal.encoders.base import Encoder, create_encoder

__all__ = ["Encoder", "create_encoder"]
