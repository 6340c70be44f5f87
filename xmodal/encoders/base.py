"""The encoder interface every modality encoder implements.

An :class:`Encoder` is a modality front end followed by a backbone. ``forward`` returns the
pooled embedding ``[B, D]``; ``forward_features`` returns the feature map of every stage
(``[B, C_i, H_i, W_i]`` for images, ``[B, C_i, N]`` for point sets; coarsest last) for dense
probes and feature-level baselines.

Front ends and backbones declare a ``layout``: ``"image"`` (``[B, C, H, W]``, the default when
absent) or ``"points"`` (``[B, C, N]``); a backbone only takes a front end of its own layout.
A backbone may own its pooling (``pool``: last map -> ``[B, D]``; PointNet max-pools over
points, then normalises), or its whole embedding (``embed``: network input -> ``[B, D]``, for an
embedding that is not a function of the last map: a ViT's class token, CLIP's projected
embedding); otherwise the embedding is the global average of the last map.

A backbone that normalises RGB pixels itself (a pretrained model from timm, open_clip or Hugging
Face, with its own mean and std) has a ``pixel_input`` attribute. Behind a front end that can
give plain pixels (``gives_pixels``: the ``rgb`` one), the :class:`Encoder` turns the front
end's ImageNet normalisation off and sets ``backbone.pixel_input = True``, so the model sees
exactly the input its own preprocessing makes; behind any other front end (depth, HHA) the
backbone takes the front end's output as it is.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES, FRONTENDS

IMAGE, POINTS = "image", "points"


@runtime_checkable
class Frontend(Protocol):
    """What a registered front end builds (``FRONTENDS``, keyed by modality): a module taking
    the modality's raw tensors in natural units to network input ``[B, out_channels, ...]``.

    Attributes:
        out_channels: channels of its output (the backbone's ``in_channels``).
        image_aligned: whether output positions are image pixels (dense probes, flips, crops).

    Optional: ``layout`` (``"image"`` when absent, ``"points"`` for ``[B, C, N]``),
    ``default_backbone`` (used when the configured backbone cannot take that layout) and
    ``gives_pixels`` (True: setting its ``normalise`` attribute to False makes it give RGB in
    [0, 1], for a backbone that normalises pixels itself).
    """

    out_channels: int
    image_aligned: bool

    def example_input(self, batch: int = 2) -> Tensor:
        """A valid raw input of ``batch`` samples, for tests."""
        ...

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Backbone(Protocol):
    """What a registered backbone factory ``build(in_channels, **options)`` returns: a module
    with per-stage feature maps, the last of which is pooled into the embedding.

    Optional: ``layout`` (``"image"`` when absent; set it on the factory too, so it can be
    checked before building), ``pool(last_map) -> [B, out_dim]`` (global average pooling
    when absent), ``embed(x) -> [B, out_dim]`` (the embedding from the network input, used
    instead of pooling the last map) and ``pixel_input`` (a bool: the backbone normalises RGB
    pixels in [0, 1] itself when the :class:`Encoder` sets it). On the factory: ``example_options``
    (options for a quick build in contract tests, when the defaults name a large model or need
    files), ``weights_option`` (the option that names pretrained weights, ``pretrained`` when
    absent), ``init_only`` (options that only fetch initial weights, left out when an export is
    loaded back; ``("pretrained",)`` when absent), ``probe_weights`` (the weights ``xmodal probe
    NAME`` uses without ``--pretrained``), ``check_options(options, key) -> str | None`` (a cheap
    check run when a run config is loaded, before any stage: one line saying what is missing,
    e.g. a weights file or the library, prefixed with the config key ``key``, or None).
    """

    out_dim: int
    stage_channels: list[int]

    def forward_features(self, x: Tensor) -> list[Tensor]: ...


def frontend_contract(name: str, entry: Any) -> None:
    """Build the front end with its default options, run it on its own example input and check
    the :class:`Frontend` protocol; raises ``TypeError``/``ValueError`` saying what is wrong.
    """
    frontend = entry()
    if not isinstance(frontend, Frontend):
        missing = [
            a
            for a in ("out_channels", "image_aligned", "example_input")
            if not hasattr(frontend, a)
        ]
        raise TypeError(f"front end '{name}' lacks {', '.join(missing) or 'a callable forward'}")
    if not (isinstance(frontend.out_channels, int) and frontend.out_channels >= 1):
        raise ValueError(
            f"front end '{name}'.out_channels must be an int >= 1, got {frontend.out_channels!r}"
        )
    if not isinstance(frontend.image_aligned, bool):
        raise ValueError(f"front end '{name}'.image_aligned must be True or False")
    if layout_of(entry) not in (IMAGE, POINTS):
        raise ValueError(
            f"front end '{name}'.layout must be '{IMAGE}' or '{POINTS}', got {layout_of(entry)!r}"
        )
    out = frontend(frontend.example_input(2))
    if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[:2] != (2, frontend.out_channels):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"front end '{name}' maps its example_input(2) to {got}, not "
            f"[2, out_channels={frontend.out_channels}, ...]"
        )


def backbone_contract(name: str, entry: Any) -> None:
    """Build the backbone for 3 input channels with its default options (or its factory's
    ``example_options``) and check the :class:`Backbone` protocol.
    """
    backbone = entry(in_channels=3, **example_options(entry))
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone '{name}' must have out_dim, stage_channels and forward_features")
    if not (isinstance(backbone.out_dim, int) and backbone.out_dim >= 1):
        raise ValueError(f"backbone '{name}'.out_dim must be an int >= 1, got {backbone.out_dim!r}")
    channels = list(backbone.stage_channels)
    if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ValueError(f"backbone '{name}'.stage_channels must list ints >= 1, got {channels!r}")
    if not callable(getattr(backbone, "pool", len)):
        raise ValueError(f"backbone '{name}'.pool must be a method: last map -> [B, out_dim]")
    if not callable(getattr(backbone, "embed", len)):
        raise ValueError(f"backbone '{name}'.embed must be a method: network input -> [B, out_dim]")


def example_options(entry: object) -> dict[str, Any]:
    """Options for a quick build of a backbone factory in contract tests: its
    ``example_options`` (a deep copy), else none (its defaults).
    """
    return copy.deepcopy(dict(getattr(entry, "example_options", None) or {}))


FRONTENDS.contract = frontend_contract
BACKBONES.contract = backbone_contract


def layout_of(entry: object) -> str:
    """The layout a front end produces or a backbone (factory) takes; ``"image"`` if undeclared."""
    return getattr(entry, "layout", IMAGE)


def backbone_fits(name: str, modality: str) -> bool:
    """Whether registered backbone ``name`` takes the layout of ``modality``'s front end."""
    return layout_mismatch(name, modality) is None


def layout_mismatch(name: str, modality: str) -> str | None:
    """Why registered backbone ``name`` cannot encode ``modality`` (its layout differs from the
    front end's), or None when it can.
    """
    takes, gives = layout_of(BACKBONES.get(name)), layout_of(FRONTENDS.get(modality))
    if takes == gives:
        return None
    return f"backbone '{name}' takes {takes} input, but modality '{modality}' gives {gives} input"


def backbone_for(modality: str, name: str) -> str:
    """``name`` if it takes ``modality``'s layout, else the front end's ``default_backbone``
    when it declares one (``points``: ``pointnet``), else ``name`` (building it then fails).
    """
    default = getattr(FRONTENDS.get(modality), "default_backbone", None)
    return default if default and not backbone_fits(name, modality) else name


class Encoder(nn.Module):
    """Front end + backbone + global pooling (the backbone's ``pool``, else the average).

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
        if hasattr(backbone, "pixel_input") and getattr(frontend, "gives_pixels", False):
            frontend.normalise = False  # the backbone applies its own model's mean and std
            backbone.pixel_input = True

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Raw modality input -> stage feature maps ``[B, C_i, H_i, W_i]`` or ``[B, C_i, N]``."""
        return self.backbone.forward_features(self.frontend(x))

    def forward(self, x: Tensor) -> Tensor:
        """Raw modality input -> pooled embedding ``[B, D]`` (over pixels or points)."""
        embed = getattr(self.backbone, "embed", None)
        if embed is not None:
            return embed(self.frontend(x))
        last = self.forward_features(x)[-1]
        pool = getattr(self.backbone, "pool", None)
        if pool is not None:
            return pool(last)
        if last.ndim == 4:  # the image path, unchanged to the last bit
            return torch.flatten(nn.functional.adaptive_avg_pool2d(last, 1), 1)
        return last.flatten(2).mean(-1)


def create_encoder(
    name: str, modality: str, frontend_kwargs: dict | None = None, **backbone_kwargs: object
) -> Encoder:
    """Build a registered backbone ``name`` behind the front end of ``modality``.

    Example: ``create_encoder("resnet8", "depth")``, or
    ``create_encoder("resnet18", "rgb", pretrained="imagenet")``.
    """
    factory = BACKBONES.get(name)
    frontend_cls = FRONTENDS.get(modality)
    mismatch = layout_mismatch(name, modality)
    if mismatch:
        default = getattr(frontend_cls, "default_backbone", None)
        raise XmodalError(mismatch + (f"; use e.g. '{default}'" if default else ""))
    try:
        frontend = frontend_cls(**(frontend_kwargs or {}))
    except (TypeError, ValueError) as exc:  # an unknown option, or a value it refuses
        raise XmodalError(
            f"front end '{modality}': bad frontend_kwargs {dict(frontend_kwargs or {})}: {exc}"
        ) from None
    try:
        backbone = factory(in_channels=frontend.out_channels, **backbone_kwargs)
    except TypeError as exc:
        raise XmodalError(
            f"encoder '{name}': bad arguments {sorted(backbone_kwargs)}: {exc}"
        ) from None
    return Encoder(modality, frontend, backbone)
