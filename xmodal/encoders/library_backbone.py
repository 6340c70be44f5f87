"""What the backbones from external model libraries (timm, open_clip, Hugging Face) share.

Each library backbone is an ordinary registered backbone (``build(in_channels, **options)``)
whose library is imported only inside its factory, so ``import xmodal`` never imports it and a
missing library is one error naming the extra to install (:func:`require`).

The model's own preprocessing travels with it (:class:`ModelPreprocess`): its input size and
interpolation, and for RGB its mean and std, read from the library's pretrained config (timm's
``pretrained_cfg``, open_clip's ``preprocess_cfg``, the Hugging Face image processor), never from
xmodal's defaults. They are persistent buffers, so a saved or exported encoder keeps the
preprocessing of the weights it was built from. Behind the ``rgb`` front end the
:class:`~xmodal.encoders.base.Encoder` switches the front end's ImageNet normalisation off and
sets ``pixel_input``: the backbone then gets RGB in [0, 1] and normalises it with the model's
own values. Behind other front ends (depth, HHA) the input is only resized.

Differences from the libraries' own image transforms, on purpose: the whole image is resized to
the model's input size (no centre crop, so stage maps stay aligned with the image's pixels for
dense probes), in float on tensors (``torch.nn.functional.interpolate``, antialiased), not on
8-bit PIL images. On an image already at the model's size both give the same network input.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError

#: interpolation modes the tensor resize implements, by name; indices are stored in the buffer
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
#: PIL resampling codes (Hugging Face image processors) -> their names
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
#: smoothing filters without a tensor equivalent (and timm's training-only "random"):
#: antialiased bicubic is used instead
_SMOOTH_AS_BICUBIC = {
    "lanczos": "bicubic",
    "box": "bicubic",
    "hamming": "bicubic",
    "random": "bicubic",
}


def require(module: str, extra: str, backbone: str) -> ModuleType:
    """Import ``module`` for backbone ``backbone``, or raise one line naming the extra to install.

    The :class:`XmodalError` says e.g. ``pip install 'xmodal[timm]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise XmodalError(
            f"backbone '{backbone}' needs the {module} package, which is not "
            f"installed ({exc.__class__.__name__}: {exc}); install it with: "
            f"pip install 'xmodal[{extra}]'"
        ) from None


def missing_library(module: str, extra: str, backbone: str) -> str | None:
    """Why backbone ``backbone`` cannot be built for want of ``module``, or None.

    Found without importing it; the reason names the extra to install.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        found = False
    if found:
        return None
    return (
        f"backbone '{backbone}' needs the {module} package, which is not installed; "
        f"install it with: pip install 'xmodal[{extra}]'"
    )


def library_check(
    module: str, extra: str, backbone: str
) -> Callable[[dict[str, Any], str], str | None]:
    """A factory's ``check_options`` that only checks that its library is installed."""

    def check_options(options: dict[str, Any], key: str) -> str | None:
        missing = missing_library(module, extra, backbone)
        return f"{key}.name: {missing}" if missing else None

    return check_options


@contextlib.contextmanager
def offline_hub(offline: bool) -> Iterator[None]:
    """While open and ``offline`` is true, the Hugging Face hub client reads only its cache.

    The client (used by timm, open_clip and transformers) then never connects
    (``HF_HUB_OFFLINE``).
    """
    if not offline:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client: nothing can download through it
        yield
        return
    before, before_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env


def hub_cached_file(repo_id: str, filenames: Sequence[str]) -> str | None:
    """The local path of the first of ``filenames`` of ``repo_id`` in the Hugging Face cache.

    None when none is cached; nothing is downloaded.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


def looks_like_path(text: str) -> bool:
    """Whether an option value is meant as a file system path (rather than a name or tag)."""
    return (
        os.sep in text
        or text.startswith(("~", "."))
        or Path(text).suffix.lower() in (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
    )


def evenly_spaced(depth: int, count: int) -> list[int]:
    """``count`` block indices spread over ``depth`` blocks, the last block last.

    ``evenly_spaced(12, 4) == [2, 5, 8, 11]``.
    """
    if depth < 1 or count < 1:
        raise XmodalError(
            f"need at least one block and one stage, got depth {depth}, stages {count}"
        )
    count = min(count, depth)
    return [round((i + 1) * depth / count) - 1 for i in range(count)]


def token_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """ViT tokens ``[B, T, C]`` -> a stage map ``[B, C, H, W]`` of the last ``H * W`` tokens.

    Those are the patch tokens; the leading class and register tokens are dropped.
    """
    h, w = grid
    if tokens.shape[1] < h * w:
        raise ValueError(f"{tokens.shape[1]} tokens cannot fill a {h}x{w} patch grid")
    patches = tokens[:, tokens.shape[1] - h * w :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w).contiguous()


def adapt_input_conv(root: nn.Module, in_channels: int) -> nn.Conv2d:
    """Replace the first 3-channel ``Conv2d`` under ``root`` by one taking ``in_channels``.

    ``root`` is a patch embedding or stem. The RGB filters are averaged and repeated, scaled by
    ``3 / in_channels`` (the usual cross-modal warm start); returns the new convolution.
    """
    for parent in root.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = adapt_conv(child, in_channels)
                setattr(parent, name, new)
                return new
    raise XmodalError(f"found no 3-channel input convolution to adapt to {in_channels} channels")


def adapt_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` for ``in_channels`` inputs: its filters averaged over RGB, repeated, rescaled.

    The scale ``3 / in_channels`` keeps the activations' magnitude; the bias is copied.
    """
    padding = conv.padding if isinstance(conv.padding, str) else pair(conv.padding)
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        pair(conv.kernel_size),
        pair(conv.stride),
        padding,
        pair(conv.dilation),
        conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D convolution's ``(height, width)`` setting, as ``nn.Conv2d`` stores it."""
    return values[0], values[1]


def _resync(module: nn.Module, _keys: Any) -> None:
    """After ``load_state_dict``: refresh a :class:`ModelPreprocess`'s plain copies."""
    cast(ModelPreprocess, module)._sync()


class ModelPreprocess(nn.Module):
    """The model's own input preprocessing, as the first step of its backbone.

    ``forward(x, pixels)``: ``x`` ``[B, C, H, W]`` is resized to the model's input size
    ``size`` (``[2]``: height, width) with its interpolation (antialiased when shrinking with
    bilinear/bicubic), unless ``resize`` is False or it already has that size; with ``pixels``
    (RGB in [0, 1]) it is then normalised with the model's ``mean`` and ``std`` (``[3]``).

    Args:
        mean, std: per-channel values for RGB in [0, 1] (ImageNet's are 0.485.../0.229...).
        size: (height, width) in pixels.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic`` (``lanczos``, ``box`` and
            ``hamming`` become antialiased bicubic).
        resize: whether to resize at all (False: the model takes the input's own size).
    """

    mean: Tensor  # [3] buffers, saved with the weights
    std: Tensor
    size: Tensor  # [2] (height, width)
    interpolation: Tensor  # index into INTERPOLATIONS

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        size: Sequence[int],
        interpolation: str,
        resize: bool = True,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise XmodalError(
                f"the model's normalisation must give 3 means and 3 positive stds, "
                f"got mean {tuple(mean)}, std {tuple(std)}"
            )
        interpolation = _SMOOTH_AS_BICUBIC.get(interpolation, interpolation)
        if interpolation not in INTERPOLATIONS:
            raise XmodalError(
                f"interpolation '{interpolation}' is not one of {', '.join(INTERPOLATIONS)}"
            )
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]))
        self.register_buffer("std", torch.tensor([float(v) for v in std]))
        self.register_buffer("size", torch.tensor([int(size[0]), int(size[1])]))
        self.register_buffer("interpolation", torch.tensor(INTERPOLATIONS.index(interpolation)))
        self.resize = resize
        self._sync()
        self.register_load_state_dict_post_hook(_resync)  # type: ignore[no-untyped-call]  # torch: unannotated

    def _sync(self) -> None:  # plain copies, so that forward never reads a device tensor
        self._size = (int(self.size[0]), int(self.size[1]))
        self._mode = INTERPOLATIONS[int(self.interpolation)]

    def forward(self, x: Tensor, pixels: bool = False) -> Tensor:
        """``[B, C, H, W]`` -> resized to the model's size; normalised too when ``pixels``."""
        if self.resize and tuple(x.shape[-2:]) != self._size:
            smooth = self._mode != "nearest"
            x = nn.functional.interpolate(
                x,
                size=self._size,
                mode=self._mode,
                align_corners=False if smooth else None,
                antialias=smooth,
            )
        if pixels:
            x = (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        return x

    def extra_repr(self) -> str:
        """The settings, for ``print(model)``."""
        return (
            f"size={self._size}, interpolation={self._mode}, mean={self.mean.tolist()}, "
            f"std={self.std.tolist()}, resize={self.resize}"
        )


class LibraryBackbone(nn.Module):
    """A backbone around a library model: :class:`ModelPreprocess`, then the model.

    Subclasses set ``stage_channels`` and ``out_dim`` and implement ``stage_maps(x)`` (stage
    maps ``[B, C_i, H_i, W_i]``, coarsest last) and ``embedding(x)`` (``[B, out_dim]``, the
    model's own pooled output) on preprocessed input.

    Attributes:
        pixel_input: set by the :class:`~xmodal.encoders.base.Encoder` when the front end gives
            RGB in [0, 1]; the model's mean and std are applied then only.
    """

    stage_channels: list[int]
    out_dim: int

    def __init__(self, preprocess: ModelPreprocess) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.pixel_input = False

    def prepare(self, x: Tensor) -> Tensor:
        """Front-end output -> the model's input (resized; normalised when it is pixels)."""
        prepared: Tensor = self.preprocess(x, pixels=self.pixel_input)
        return prepared

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Front-end output -> the model's stage maps ``[B, C_i, H_i, W_i]``, coarsest last."""
        return self.stage_maps(self.prepare(x))

    def embed(self, x: Tensor) -> Tensor:
        """Front-end output -> the model's own pooled embedding ``[B, out_dim]``."""
        return self.embedding(self.prepare(x))

    def stage_maps(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        """Model input -> stage maps; the subclass's."""
        raise NotImplementedError

    def embedding(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Model input -> ``[B, out_dim]``; the subclass's."""
        raise NotImplementedError


def spatial_mean(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` (or ``[B, C, ...]``) -> ``[B, C]``; ``[B, C]`` unchanged."""
    return x if x.ndim == 2 else x.flatten(2).mean(-1)


class TextTower:
    """The text encoder paired with a CLIP-style image backbone, for zero-shot probes.

    open_clip's ``encode_text`` or transformers' ``get_text_features``, built by the backbone
    factory's ``text_tower(**options)`` from the same options as the image tower.

    ``encode(texts)`` gives the model's text embeddings ``[P, D]`` (float32, CPU, *not*
    normalised), in the space of the backbone's image embedding ``encoder(x)``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def tokens(self, texts: list[str]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Texts -> the model's token tensors; the subclass's."""
        raise NotImplementedError

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        """Tokens -> text embeddings ``[P, D]``; the subclass's."""
        raise NotImplementedError

    @torch.inference_mode()
    def encode(
        self, texts: list[str], batch_size: int = 256, device: torch.device | str = "cpu"
    ) -> Tensor:
        """Text embeddings ``[len(texts), D]``, float32 on CPU, in batches of ``batch_size``."""
        if not texts:
            raise ValueError("no texts to encode")
        self.model.to(device)
        out = []
        try:
            for start in range(0, len(texts), batch_size):
                tokens = {
                    k: v.to(device)
                    for k, v in self.tokens(texts[start : start + batch_size]).items()
                }
                out.append(self.forward(tokens).float().cpu())
        finally:
            self.model.to("cpu")
        return torch.cat(out)
