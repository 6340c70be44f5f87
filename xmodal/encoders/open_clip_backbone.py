"""The image tower of any open_clip model as an xmodal backbone (``open_clip``).

The embedding is the tower's own output, CLIP's image embedding (``model.encode_image`` without
normalisation: the pooled token or attention pool, projected). Stage maps come from the tower's
``forward_intermediates``: ``stages`` evenly spaced blocks of a ViT (patch tokens
``[B, C, H, W]``, the class token dropped, ``ln_post`` applied), or every stage of a ResNet or
timm tower. The text tower is dropped after loading.

Preprocessing is the model's ``preprocess_cfg`` (what open_clip builds its ``Resize`` and
``Normalize`` from: ``mean``, ``std``, ``size``, ``interpolation``; of the pretrained tag, or of
a ``local-dir:`` folder's ``open_clip_config.json``), see
:mod:`xmodal.encoders.library_backbone`. ``resize_mode`` is not applied: the whole image is
resized to ``size`` (no centre crop, no padding).

The factory's ``text_tower`` (:func:`build_open_clip_text`) builds the same model again from the
same options and keeps its text tower (``encode_text`` with the model's tokenizer) for
zero-shot probes: its embeddings live in the space of this backbone's embedding.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders.library_backbone import (
    LibraryBackbone,
    ModelPreprocess,
    TextTower,
    adapt_input_conv,
    evenly_spaced,
    first_line,
    hub_cached_file,
    library_check,
    looks_like_path,
    offline_hub,
    require,
)

#: keys of an open_clip pretrained tag's config that set the preprocessing
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class OpenClipBackbone(LibraryBackbone):
    """An open_clip image tower (``model.visual``), behind its own preprocessing."""

    def __init__(
        self, visual: Any, preprocess: ModelPreprocess, in_channels: int, stages: int
    ) -> None:
        super().__init__(preprocess)
        self.visual = visual  # an open_clip tower (untyped): forward_intermediates, ...
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        self._indices = evenly_spaced(len(blocks), stages) if blocks is not None else None
        was_training = visual.training
        visual.eval()
        with torch.no_grad():  # one dry run gives every stage's channels and the embedding size
            probe = torch.zeros(1, in_channels, *preprocess._size)
            out = visual.forward_intermediates(probe, indices=self._indices)
        visual.train(was_training)
        self.stage_channels = [int(m.shape[1]) for m in out["image_intermediates"]]
        self.out_dim = int(out["image_features"].shape[-1])

    def stage_maps(self, x: Tensor) -> list[Tensor]:
        """Model input -> the chosen blocks' or stages' maps ``[B, C_i, H_i, W_i]``."""
        out = self.visual.forward_intermediates(
            x, indices=self._indices, intermediates_only=True, normalize_intermediates=True
        )
        return list(out["image_intermediates"])

    def embedding(self, x: Tensor) -> Tensor:
        """Model input -> CLIP's image embedding ``[B, out_dim]``, unnormalised."""
        embedded: Tensor = self.visual(x)
        return embedded


def _weights(open_clip: Any, model: str, pretrained: str, offline: bool) -> dict[str, Any]:
    """``create_model`` keyword arguments that load ``pretrained``.

    Never a download when ``offline``.
    """
    if model.startswith("local-dir:"):
        folder = Path(model.split(":", 1)[1]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise XmodalError(
                f"open_clip model folder '{folder}' has no open_clip_config.json; "
                "give a folder saved by open_clip (open_clip_config.json + "
                "open_clip_model.safetensors)"
            )
        return {}
    if not pretrained or model.startswith("hf-hub:"):
        return {}  # random init, or the hub repo's own weights (through the offline hub client)
    name = model.replace("/", "-")
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    if tag:
        if not offline:
            return {"pretrained": pretrained}
        if tag.get("hf_hub"):
            repo, filename = os.path.split(tag["hf_hub"])  # 'org/repo/' or 'org/repo/file'
            filename = filename or "open_clip_pytorch_model.bin"
            names = [
                str(Path(filename).with_suffix(".safetensors")).replace("pytorch_model", "model"),
                str(Path(filename).with_suffix(".safetensors")),
                filename,
            ]
            if hub_cached_file(repo, names):
                return {"pretrained": pretrained}  # read from the cache, the hub client offline
            where = f"Hugging Face repo '{repo}'"
        else:
            cached = Path("~/.cache/clip").expanduser() / Path(tag.get("url", "")).name
            if tag.get("url") and cached.is_file():
                return {
                    "pretrained": str(cached),
                    "force_preprocess_cfg": {k: tag[k] for k in _PREPROCESS_KEYS if k in tag},
                }
            where = tag.get("url") or "nowhere"
        raise XmodalError(
            f"open_clip weights '{pretrained}' of '{model}' are not in the local cache "
            f"(from {where}); download them once with the backbone option "
            "offline=false, or give pretrained=PATH to a local checkpoint"
        )
    path = Path(pretrained).expanduser()
    if path.is_file():
        return {"pretrained": str(path)}
    if looks_like_path(pretrained):
        raise XmodalError(
            f"open_clip checkpoint '{pretrained}' does not exist; set pretrained to "
            "a checkpoint file, a tag of the model or '' (random init)"
        )
    tags = open_clip.list_pretrained_tags_by_model(name)
    raise XmodalError(
        f"open_clip has no pretrained tag '{pretrained}' for '{model}' and it is not a "
        f"file; tags: {', '.join(tags) or '(none)'}"
    )


def build_open_clip(
    in_channels: int,
    model: str = "ViT-B-32",
    pretrained: str = "",
    offline: bool = True,
    model_kwargs: dict[str, Any] = {},  # noqa: B006  (never mutated: copied before use)
    resize: bool = True,
    stages: int = 4,
) -> OpenClipBackbone:
    """The image tower of an open_clip model (``open_clip.create_model``).

    Args:
        in_channels: input channels; other than 3, the tower's first convolution is adapted
            (RGB filters averaged and repeated, scaled by ``3 / in_channels``).
        model: an open_clip model name (``ViT-B-32``), ``local-dir:FOLDER`` (a folder saved by
            open_clip: ``open_clip_config.json`` + weights) or ``hf-hub:ORG/REPO``.
        pretrained: a pretrained tag of the model (``laion2b_s34b_b79k``, from the local cache
            unless ``offline`` is false), a local checkpoint file, or ``""`` (random init).
        offline: never download (the Hugging Face hub client reads only its cache).
        model_kwargs: overrides of the model config (``create_model``'s keyword arguments,
            e.g. a whole ``vision_cfg``).
        resize: resize inputs to the model's input size (False: keep their size).
        stages: how many evenly spaced blocks of a ViT tower give stage maps.
    """
    open_clip = require("open_clip", "open_clip", "open_clip")
    source = _weights(open_clip, model, pretrained, offline)
    try:
        with offline_hub(offline):
            net = open_clip.create_model(model, **{**copy.deepcopy(dict(model_kwargs)), **source})
    except XmodalError:
        raise
    except Exception as exc:
        raise XmodalError(
            f"open_clip could not build '{model}' with pretrained "
            f"'{pretrained or 'none'}' ({first_line(exc)})"
        ) from None
    visual = net.visual
    cfg = visual.preprocess_cfg
    preprocess = ModelPreprocess(
        cfg["mean"], cfg["std"], _pair(cfg["size"]), cfg["interpolation"], resize
    )
    if in_channels != 3:
        adapt_input_conv(visual, in_channels)
    return OpenClipBackbone(visual, preprocess, in_channels, stages)


class OpenClipText(TextTower):
    """An open_clip model's text tower: its tokenizer, then ``encode_text`` (unnormalised)."""

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__(model)
        self.tokenizer = tokenizer
        self.vocab_size = int(getattr(model, "vocab_size", 0) or 0)

    def tokens(self, texts: list[str]) -> dict[str, Tensor]:
        """Texts -> ``{"text": token ids [P, context_length]}``."""
        ids = self.tokenizer(texts)
        if self.vocab_size and int(ids.max()) >= self.vocab_size:
            raise XmodalError(
                f"the open_clip tokenizer gives token ids up to {int(ids.max())}, but "
                f"the model's text tower has a vocabulary of {self.vocab_size}: the "
                "model config and its tokenizer do not belong together"
            )
        return {"text": ids}

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        """Tokens -> text embeddings ``[P, D]``, unnormalised."""
        clip: Any = self.model  # an open_clip model (untyped)
        embedded: Tensor = clip.encode_text(tokens["text"], normalize=False)
        return embedded


def build_open_clip_text(
    model: str = "ViT-B-32",
    pretrained: str = "",
    offline: bool = True,
    model_kwargs: dict[str, Any] = {},  # noqa: B006  (never mutated: copied before use)
    **_image_options: Any,
) -> OpenClipText:
    """The text tower of the open_clip model whose image tower :func:`build_open_clip` takes.

    Built from the same options (image-only options such as ``resize`` are ignored). The
    tokenizer is the model's (``open_clip.get_tokenizer``), at the model's context length.
    """
    open_clip = require("open_clip", "open_clip", "open_clip")
    source = _weights(open_clip, model, pretrained, offline)
    try:
        with offline_hub(offline):
            net = open_clip.create_model(model, **{**copy.deepcopy(dict(model_kwargs)), **source})
            tokenizer = open_clip.get_tokenizer(
                model, context_length=getattr(net, "context_length", None)
            )
    except XmodalError:
        raise
    except Exception as exc:
        raise XmodalError(
            f"open_clip could not build the text tower of '{model}' with pretrained "
            f"'{pretrained or 'none'}' ({first_line(exc)})"
        ) from None
    if not callable(getattr(net, "encode_text", None)):
        raise XmodalError(f"open_clip model '{model}' has no text tower (encode_text)")
    net.visual = nn.Identity()  # the image tower is the backbone's; free its weights here
    return OpenClipText(net, tokenizer)


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An image size, one number or (height, width), as (height, width)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


#: a tiny ViT (2 blocks of width 32 at 32 x 32 pixels) for contract tests: no files, no download
build_open_clip.example_options = {  # type: ignore[attr-defined]
    "model": "ViT-B-32",
    "model_kwargs": {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    },
}
build_open_clip.weights_option = "pretrained"  # type: ignore[attr-defined]
build_open_clip.text_tower = build_open_clip_text  # type: ignore[attr-defined]
build_open_clip.init_only = ("pretrained",)  # type: ignore[attr-defined]  # export holds them
build_open_clip.check_options = library_check(  # type: ignore[attr-defined]
    "open_clip", "open_clip", "open_clip"
)
BACKBONES.add(
    "open_clip",
    build_open_clip,
    "the image tower of an open_clip model, with its own "
    "preprocessing; weights from a local checkpoint, folder or cache",
)
