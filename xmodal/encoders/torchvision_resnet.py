"""torchvision ResNet-18/50 as xmodal backbones, for any number of input channels.

For ImageNet weights on a non-RGB input (depth: 1 channel, HHA: 3, audio: 1), the first
convolution's filters are averaged over the RGB channels and repeated, scaled by
``3 / in_channels`` so that activations keep their magnitude: the usual cross-modal warm start.

``pretrained`` is ``None`` (random init), ``"imagenet"`` (torchvision's download/cache), or the
path of a local ``.pth`` state dict (for machines without internet).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders.base import chain_stages
from xmodal.encoders.library_backbone import adapt_conv

_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}


def _models() -> Any:
    """``torchvision.models``, imported on first use (it costs ~4 s of CPU: torch._dynamo)."""
    import torchvision.models

    return torchvision.models


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier; stage maps at strides 4, 8, 16, 32."""

    def __init__(
        self, arch: str, in_channels: int, pretrained: str | None = None, small_input: bool = False
    ) -> None:
        super().__init__()
        net = getattr(_models(), arch)(weights=None)
        if pretrained:
            net.load_state_dict(_load_state_dict(arch, pretrained))
        if in_channels != 3:
            net.conv1 = adapt_conv(net.conv1, in_channels)
        if small_input:  # CIFAR-sized inputs: keep resolution in the stem
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.stage_channels = [self._channels(s) for s in self.stages]
        self.out_dim = self.stage_channels[-1]

    @staticmethod
    def _channels(stage: nn.Module) -> int:
        last = list(stage.children())[-1]  # a BasicBlock (bn2 last) or Bottleneck (bn3)
        bn = getattr(last, "bn3", None) or last.get_submodule("bn2")
        return cast(nn.BatchNorm2d, bn).num_features

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[B, C, H, W]`` -> the four stages' maps, at strides 4, 8, 16 and 32."""
        return chain_stages(self.stages, self.stem(x))


def _load_state_dict(arch: str, pretrained: str) -> dict[str, Tensor]:
    if pretrained == "imagenet":
        weights = getattr(_models(), _WEIGHTS[arch]).IMAGENET1K_V1
        try:
            state: dict[str, Tensor] = weights.get_state_dict(progress=False, weights_only=True)
            return state  # tensors, never code
        except Exception as exc:  # no network and nothing in the torch hub cache
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise XmodalError(
                f"could not load ImageNet weights for {arch} ({exc.__class__.__name__}: {reason}); "
                f"download {weights.url} on a connected machine and point the encoder's "
                "'pretrained' option at that file, e.g. "
                f"--set teacher.encoder.{arch}.pretrained=PATH"
            ) from None
    path = Path(pretrained)
    if not path.is_file():
        raise XmodalError(
            f"pretrained weights file '{path}' does not exist; set 'pretrained' to "
            "'imagenet', a .pth path, or null"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise XmodalError(
            f"pretrained weights file '{path}' could not be read "
            f"({exc.__class__.__name__}); it must hold only tensors: a torch state "
            "dict saved with torch.save"
        ) from None
    loaded = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
    state = {k: v for k, v in loaded.items() if not k.startswith("fc.")}
    fresh = getattr(_models(), arch)(weights=None).state_dict()
    missing = [k for k in fresh if not k.startswith("fc.") and k not in state]
    if missing:
        raise XmodalError(
            f"pretrained weights file '{path}' is not a torchvision {arch} state "
            f"dict: missing {len(missing)} keys, e.g. '{missing[0]}'"
        )
    state.update({k: v for k, v in fresh.items() if k.startswith("fc.")})
    return state


def check_pretrained(options: dict[str, Any], key: str, arch: str = "resnet18") -> str | None:
    """At config load: a ``pretrained`` weights file that does not exist, or None.

    ``key`` is the encoder's config key; the option sits under ``key.<arch>``.
    """
    pretrained = options.get("pretrained")
    if (
        not isinstance(pretrained, str)
        or pretrained in ("", "imagenet")
        or Path(pretrained).exists()
    ):
        return None
    where = "" if Path(pretrained).is_absolute() else f" (relative to {Path.cwd()})"
    return (
        f"{key}.{arch}.pretrained: weights file '{pretrained}' does not exist{where}; set it "
        "to 'imagenet', the path of a torchvision state dict (.pth), or null"
    )


def _register(arch: str) -> None:
    def build(
        in_channels: int, pretrained: str | None = None, small_input: bool = False
    ) -> TorchvisionResNet:
        return TorchvisionResNet(arch, in_channels, pretrained, small_input)

    build.__doc__ = f"torchvision {arch} (ImageNet weights optional), any input channels"
    build.probe_weights = "imagenet"  # type: ignore[attr-defined]  # xmodal probe's default
    build.check_options = functools.partial(check_pretrained, arch=arch)  # type: ignore[attr-defined]
    BACKBONES.add(arch, build, build.__doc__)


for _arch in _WEIGHTS:
    _register(_arch)
