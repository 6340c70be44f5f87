"""Layer 2: modality encoders (front end + backbone), created by name from the registry."""

from xmodal.encoders import cifar_resnet, frontends, pointnet, torchvision_resnet  # noqa: F401  (registration)
from xmodal.encoders import hf_backbone, open_clip_backbone, timm_backbone  # noqa: F401  (libraries load lazily)
from xmodal.encoders.base import Encoder, create_encoder

__all__ = ["Encoder", "create_encoder"]
