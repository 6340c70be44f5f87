"""The encoder interface every modality encoder implements.

An :class:`Encoder` is a modality front end followed by a backbone. ``forward`` returns the
pooled embedding ``[B, D]``; ``forward_features`` returns the feature map of every stage
(``[B, C_i, H_i, W_i]`` for images, ``[B, C_i, N]`` for point sets, ``[B, C_i, T]`` for
sequences; coarsest last) for dense probes and feature-level baselines.

Front ends and backbones declare a ``layout`` (:data:`LAYOUTS`): ``"image"`` (``[B, C, H, W]``,
the default when absent), ``"points"`` (``[B, C, N]``, an unordered set) or ``"sequence"``
(``[B, C, T]``, channels over time); a backbone only takes a front end of its own layout.
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
import warnings
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn

from xmodal.core.errors import DeprecatedSpelling, XmodalError
from xmodal.core.registry import BACKBONES, FRONTENDS

IMAGE, POINTS, SEQUENCE = "image", "points", "sequence"
LAYOUTS: dict[str, str] = {
    IMAGE: "[B, C, H, W]",
    POINTS: "[B, C, N]",
    SEQUENCE: "[B, C, T]",
}
"""Every layout a front end may give and a backbone may take, with its network-input shape."""


@runtime_checkable
class Frontend(Protocol):
    """What a registered front end builds (``FRONTENDS``, keyed by modality).

    A module taking the modality's raw tensors in natural units to network input
    ``[B, out_channels, ...]``.

    Attributes:
        out_channels: channels of its output (the backbone's ``in_channels``).
        image_aligned: whether output positions are image pixels (dense probes, flips, crops).

    Optional: ``layout`` (one of :data:`LAYOUTS`; ``"image"`` when absent),
    ``default_backbone`` (used when the configured backbone cannot take that layout) and
    ``gives_pixels`` (True: setting its ``normalise`` attribute to False makes it give RGB in
    [0, 1], for a backbone that normalises pixels itself).
    """

    out_channels: int
    image_aligned: bool

    def example_input(self, batch: int = 2) -> Tensor:
        """A valid raw input of ``batch`` samples, for tests."""
        ...

    def __call__(self, x: Tensor) -> Tensor:
        """Raw input -> network input ``[B, out_channels, ...]`` of its layout."""
        ...


@runtime_checkable
class Backbone(Protocol):
    """What a registered backbone factory ``build(in_channels, **options)`` returns.

    A module with per-stage feature maps, the last of which is pooled into the embedding.

    Optional: ``layout`` (one of :data:`LAYOUTS`, ``"image"`` when absent; set it on the
    factory, where it is checked before building, and on the module too if you like),
    ``pool(last_map) -> [B, out_dim]`` (global average pooling when absent),
    ``embed(x) -> [B, out_dim]`` (the embedding from the network input, used instead of
    pooling the last map) and ``pixel_input`` (a bool: the backbone normalises RGB pixels in
    [0, 1] itself when the :class:`Encoder` sets it). On the factory: ``example_options``
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

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Network input -> the feature map of every stage, coarsest last."""
        ...


def frontend_contract(name: str, entry: Any) -> None:
    """Check a front end class against the :class:`Frontend` protocol and :data:`LAYOUTS`.

    Builds it with its default options and runs it on its own example input; raises
    ``TypeError``/``ValueError`` saying what is wrong.
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
    check_layout("front end", name, entry)
    if layout_of(frontend) != layout_of(entry):
        raise ValueError(
            f"front end '{name}' declares layout {layout_of(entry)!r} on its class but "
            f"{layout_of(frontend)!r} once built"
        )
    out = frontend(frontend.example_input(2))
    if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[:2] != (2, frontend.out_channels):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"front end '{name}' maps its example_input(2) to {got}, not "
            f"[2, out_channels={frontend.out_channels}, ...]"
        )


def backbone_contract(name: str, entry: Any) -> None:
    """Check a backbone factory against the :class:`Backbone` protocol and :data:`LAYOUTS`.

    Builds it for 3 input channels with its default options (or its factory's
    ``example_options``); raises ``TypeError``/``ValueError`` saying what is wrong.
    """
    check_layout("backbone", name, entry)
    backbone = entry(in_channels=3, **example_options(entry))
    built = getattr(backbone, "layout", None)
    if built is not None and built != layout_of(entry):
        raise ValueError(
            f"backbone '{name}' takes layout {layout_of(entry)!r} by its factory but its "
            f"module says {built!r}; set the same on both"
        )
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
    """Options for a quick build of a backbone factory in contract tests.

    Its ``example_options`` (a deep copy), else none (its defaults).
    """
    return copy.deepcopy(dict(getattr(entry, "example_options", None) or {}))


FRONTENDS.contract = frontend_contract
BACKBONES.contract = backbone_contract


def layout_of(entry: object) -> str:
    """The layout a front end produces or a backbone (factory) takes; ``"image"`` if undeclared."""
    return getattr(entry, "layout", IMAGE)


def check_layout(kind: str, name: str, entry: object) -> None:
    """Raise ``ValueError`` unless ``entry`` declares one of :data:`LAYOUTS` (or none: image).

    ``entry`` is a front end class or backbone factory; ``kind`` names it in the message.
    """
    layout = layout_of(entry)
    if not isinstance(layout, str) or layout not in LAYOUTS:
        known = ", ".join(f"'{k}' {v}" for k, v in LAYOUTS.items())
        raise ValueError(f"{kind} '{name}'.layout must be one of {known}; got {layout!r}")


def layout_example(layout: str, channels: int, batch: int = 2) -> Tensor:
    """A random network input of ``layout``, as a front end of it gives, for dry runs and tests.

    ``[batch, channels, 16, 16]`` images, ``[batch, channels, 64]`` point sets or sequences;
    seeded, and drawn without touching the global RNG.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    g = torch.Generator().manual_seed(0)  # leaves the global RNG alone
    size = (16, 16) if layout == IMAGE else (64,)
    return torch.randn(batch, channels, *size, generator=g)


def backbone_fits(name: str, modality: str) -> bool:
    """Whether registered backbone ``name`` takes the layout of ``modality``'s front end."""
    return layout_mismatch(name, modality) is None


def layout_mismatch(name: str, modality: str) -> str | None:
    """Why registered backbone ``name`` cannot encode ``modality``, or None when it can.

    It cannot when its layout differs from that of the modality's front end; the reason names
    both layouts and their shapes.
    """
    takes, gives = layout_of(BACKBONES.get(name)), layout_of(FRONTENDS.get(modality))
    if takes == gives:
        return None
    return (
        f"backbone '{name}' takes {takes} input {LAYOUTS.get(takes, '')}, but modality "
        f"'{modality}' gives {gives} input {LAYOUTS.get(gives, '')}"
    )


def backbone_for(modality: str, name: str) -> str:
    """The backbone that encodes ``modality`` when ``name`` is configured.

    ``name`` if it takes ``modality``'s layout. An image backbone (the shared default of image
    students) gives way to the front end's ``default_backbone`` when it declares one
    (``points``: ``pointnet``; ``sequence``: ``temporal_conv``). Otherwise ``name``: a backbone
    of another layout is never swapped silently, and the load checks refuse the pair.
    """
    default = getattr(FRONTENDS.get(modality), "default_backbone", None)
    gives_way = layout_of(BACKBONES.get(name)) == IMAGE and not backbone_fits(name, modality)
    return default if default and gives_way else name


class Encoder(nn.Module):
    """Front end + backbone + global pooling (the backbone's ``pool``, else the average).

    Attributes:
        modality: the input modality name (``"rgb"``, ``"depth"``, ``"audio"``, ...).
        embed_dim: size ``D`` of the pooled embedding.
        stage_channels: channels of each stage's feature map.
    """

    def __init__(self, modality: str, frontend: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        gives, takes = layout_of(frontend), getattr(backbone, "layout", None)
        if takes is not None and takes != gives:  # a backbone module that names its layout
            raise XmodalError(
                f"backbone {type(backbone).__name__} takes {takes} input "
                f"{LAYOUTS.get(takes, '')}, but front end '{modality}' gives {gives} input "
                f"{LAYOUTS.get(gives, '')}"
            )
        self.modality = modality
        self.frontend = frontend
        self.backbone = backbone
        spec = cast(Backbone, backbone)  # the protocol its factory's contract checks
        self.embed_dim: int = spec.out_dim
        self.stage_channels: list[int] = list(spec.stage_channels)
        if hasattr(backbone, "pixel_input") and getattr(frontend, "gives_pixels", False):
            pixels: Any = frontend  # attributes outside the Frontend protocol
            pixels.normalise = False  # the backbone applies its own model's mean and std
            switch: Any = backbone
            switch.pixel_input = True

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Raw modality input -> stage feature maps ``[B, C_i, ...]`` of the layout.

        ``[B, C_i, H_i, W_i]`` (image), ``[B, C_i, N]`` (points) or ``[B, C_i, T]`` (sequence).
        """
        return cast(Backbone, self.backbone).forward_features(self.frontend(x))

    def forward(self, x: Tensor) -> Tensor:
        """Raw modality input -> pooled embedding ``[B, D]`` (over pixels, points or steps)."""
        embed = getattr(self.backbone, "embed", None)
        if embed is not None:
            embedded: Tensor = embed(self.frontend(x))
            return embedded
        last = self.forward_features(x)[-1]
        pool = getattr(self.backbone, "pool", None)
        if pool is not None:
            pooled: Tensor = pool(last)
            return pooled
        if last.ndim == 4:  # the image path, unchanged to the last bit
            return torch.flatten(nn.functional.adaptive_avg_pool2d(last, 1), 1)
        return last.flatten(2).mean(-1)


def chain_stages(stages: nn.ModuleList, x: Tensor) -> list[Tensor]:
    """Run ``x`` through ``stages`` in turn and return every stage's output, finest first."""
    maps = []
    for stage in stages:
        x = stage(x)
        maps.append(x)
    return maps


def create_encoder(
    name: str,
    modality: str,
    frontend_options: dict[str, Any] | None = None,
    **backbone_options: object,
) -> Encoder:
    """Build a registered backbone ``name`` behind the front end of ``modality``.

    Example: ``create_encoder("resnet8", "depth")``, or
    ``create_encoder("resnet18", "rgb", pretrained="imagenet")``: ``frontend_options`` go to
    the front end, every other keyword to the backbone's factory. (``frontend_kwargs=`` is
    the former spelling of ``frontend_options=``, read for one more release.)
    """
    if "frontend_kwargs" in backbone_options:  # the former keyword
        warnings.warn(
            "create_encoder(frontend_kwargs=...) is deprecated: write frontend_options=...",
            DeprecatedSpelling,
            stacklevel=2,
        )
        former = backbone_options.pop("frontend_kwargs")
        frontend_options = frontend_options or (dict(former) if isinstance(former, dict) else {})
    factory = BACKBONES.get(name)
    frontend_cls = FRONTENDS.get(modality)
    mismatch = layout_mismatch(name, modality)
    if mismatch:
        default = getattr(frontend_cls, "default_backbone", None)
        raise XmodalError(mismatch + (f"; use e.g. '{default}'" if default else ""))
    try:
        frontend = frontend_cls(**(frontend_options or {}))
    except (TypeError, ValueError) as exc:  # an unknown option, or a value it refuses
        raise XmodalError(
            f"front end '{modality}': bad options {dict(frontend_options or {})}: {exc}"
        ) from None
    try:
        backbone = factory(in_channels=frontend.out_channels, **backbone_options)
    except TypeError as exc:
        raise XmodalError(
            f"encoder '{name}': bad options {sorted(backbone_options)}: {exc}"
        ) from None
    return Encoder(modality, frontend, backbone)
