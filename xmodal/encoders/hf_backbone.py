"""A Hugging Face transformers vision encoder as an xmodal backbone (``hf``), from a folder.

DINOv2, CLIP or SigLIP vision towers, or any ``AutoModel`` ViT, loaded from a local folder. The
folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``) plus the
image processor's ``preprocessor_config.json``; it is read with ``local_files_only=True``. For a
dual model (``CLIPModel``, ``SiglipModel``) the vision tower is kept and the text tower dropped.

The embedding is the model's own pooled output: ``pooler_output`` (DINOv2 and CLIP: the class
token after the final layer norm; SigLIP: its attention-pool head), through the visual
projection of a dual CLIP model (``get_image_features``); the average of the last map for a
model without one. Stage maps are the hidden states of ``stages`` evenly spaced layers, the last
being the model's ``last_hidden_state``, as patch-token maps ``[B, C, H / p, W / p]`` (class
and register tokens dropped).

Preprocessing is the image processor's: ``image_mean``, ``image_std``, ``rescale_factor``, the
input size (``crop_size`` when it centre-crops, else ``size``) and ``resample``; see
:mod:`xmodal.encoders.library_backbone`. The whole image is resized to that size (no
shortest-edge resize and crop).

The factory's ``text_tower`` (:func:`build_hf_text`) loads a dual model's text tower and the
folder's tokenizer (``get_text_features``, the same space as the image embedding) for zero-shot
probes; ``text_tower_missing`` says why a vision-only model has none.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders.library_backbone import (
    PIL_RESAMPLE,
    LibraryBackbone,
    ModelPreprocess,
    TextTower,
    adapt_input_conv,
    evenly_spaced,
    first_line,
    hub_cached_file,
    library_check,
    offline_hub,
    require,
    token_map,
)

#: a Hugging Face hub id (``facebook/dinov2-small``); other strings that are not folders are paths
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class HFBackbone(LibraryBackbone):
    """A transformers ViT vision tower (and visual projection, if any), behind its preprocessing."""

    def __init__(
        self,
        tower: nn.Module,
        projection: nn.Linear | None,
        config: Any,
        preprocess: ModelPreprocess,
        stages: int,
    ) -> None:
        super().__init__(preprocess)
        self.tower = tower
        self.projection = projection
        patch = config.patch_size
        self._patch = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
        self._indices = evenly_spaced(int(config.num_hidden_layers), stages)
        self.stage_channels = [int(config.hidden_size)] * len(self._indices)
        self.out_dim = (
            int(projection.out_features) if projection is not None else int(config.hidden_size)
        )
        for name, parameter in tower.named_parameters():  # only for masked-image pretraining:
            if name.endswith("mask_token"):  # never used here, so never trained
                parameter.requires_grad_(False)

    def _grid(self, x: Tensor) -> tuple[int, int]:
        return x.shape[-2] // self._patch[0], x.shape[-1] // self._patch[1]

    def stage_maps(self, x: Tensor) -> list[Tensor]:
        """Model input -> patch-token maps ``[B, C, H / p, W / p]`` of the chosen layers."""
        out = self.tower(pixel_values=x, output_hidden_states=True, return_dict=True)
        grid = self._grid(x)
        hidden = [out.hidden_states[i + 1] for i in self._indices[:-1]]  # [0] is the embeddings
        return [token_map(h, grid) for h in (*hidden, out.last_hidden_state)]

    def embedding(self, x: Tensor) -> Tensor:
        """Model input -> its pooled output ``[B, out_dim]``, projected in a dual model."""
        out = self.tower(pixel_values=x, return_dict=True)
        pooled: Tensor | None = getattr(out, "pooler_output", None)
        if pooled is None:
            return token_map(out.last_hidden_state, self._grid(x)).flatten(2).mean(-1)
        if self.projection is not None:
            projected: Tensor = self.projection(pooled)
            return projected
        return pooled


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No weight-loading progress bars from transformers while loading."""
    logging = transformers.utils.logging
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _load(
    transformers: Any, model: str, offline: bool, model_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """``(model, image processor)`` from a folder, a model type (random init) or a hub id."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    folder = Path(model).expanduser()
    if not folder.is_dir() and model in CONFIG_MAPPING:  # a model type: random init
        config = transformers.AutoConfig.for_model(model, **model_kwargs)
        processor = _default_processor(model)
        side = config.image_size  # the model's own input size, not the processor's default
        processor.do_center_crop, processor.size = False, {"height": side, "width": side}
        return transformers.AutoModel.from_config(config), processor
    if not folder.is_dir() and not _HUB_ID.fullmatch(model):
        raise XmodalError(
            f"Hugging Face model folder '{model}' does not exist; give a folder "
            "written by save_pretrained (config.json, model.safetensors and the "
            "image processor's preprocessor_config.json)"
        )
    source = str(folder) if folder.is_dir() else model
    local = offline or folder.is_dir()
    try:
        net = transformers.AutoModel.from_pretrained(
            source, local_files_only=local, dtype=torch.float32, **model_kwargs
        )
    except Exception as exc:
        where = (
            f"folder '{source}'"
            if folder.is_dir()
            else f"'{source}' (not a local folder, nor in the local Hugging Face cache)"
        )
        raise XmodalError(
            f"transformers could not load a model from {where} ({first_line(exc)}); "
            "give a folder written by save_pretrained"
            + (
                ""
                if folder.is_dir()
                else ", or download it once with the backbone option offline=false"
            )
        ) from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=local)
    except Exception as exc:
        raise XmodalError(
            f"'{source}' has no image processor config ({first_line(exc)}); save the "
            "model's image processor beside it (processor.save_pretrained(folder)): "
            "xmodal takes the input size, mean and std from it"
        ) from None
    return net, processor


def _default_processor(model_type: str) -> Any:
    """The image processor transformers pairs with ``model_type``, with its default values."""
    auto = require("transformers.models.auto.image_processing_auto", "hf", "hf")
    for key in (model_type, model_type.removesuffix("_vision_model")):
        found = auto.IMAGE_PROCESSOR_MAPPING_NAMES.get(key)  # a name, or names by backend
        names: list[str] = []
        if isinstance(found, dict):
            names = [n for n in (found.get("torchvision"), found.get("pil")) if n]
        elif isinstance(found, str):
            names = [found]
        for name in names:
            cls = auto.get_image_processor_class_from_name(name)
            if cls is not None:
                return cls()
    raise XmodalError(
        f"transformers has no image processor for model type '{model_type}'; give a "
        "folder with the model and its preprocessor_config.json instead"
    )


def _preprocess(processor: Any, config: Any, resize: bool) -> ModelPreprocess:
    """The image processor's size, resampling and normalisation, for RGB in [0, 1]."""

    def field(size: Any, key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    height, width = field(size, "height"), field(size, "width")
    if not (height and width):
        edge = field(size, "shortest_edge") or config.image_size
        height = width = edge
    resample = getattr(processor, "resample", 3)
    mode = getattr(resample, "value", resample)
    mode = PIL_RESAMPLE.get(int(mode), "bicubic") if isinstance(mode, int) else str(mode).lower()
    scale = 255.0 * (processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0)
    if getattr(processor, "do_normalize", True):
        mean, std = processor.image_mean, processor.image_std
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean = [m / scale for m in (mean if len(mean) == 3 else list(mean) * 3)]
    std = [s / scale for s in (std if len(std) == 3 else list(std) * 3)]
    return ModelPreprocess(mean, std, (int(height), int(width)), mode, resize)


def build_hf(
    in_channels: int,
    model: str = "",
    offline: bool = True,
    model_kwargs: dict[str, Any] = {},  # noqa: B006  (never mutated: copied before use)
    resize: bool = True,
    stages: int = 4,
) -> HFBackbone:
    """A transformers vision encoder (``AutoModel``) from a folder, behind its image processor.

    Args:
        in_channels: input channels; other than 3, the patch embedding is adapted (RGB filters
            averaged and repeated, scaled by ``3 / in_channels``).
        model: a folder written by ``save_pretrained`` (with ``preprocessor_config.json``); or a
            hub id, read from the local Hugging Face cache (downloaded only with
            ``offline=false``); or a model type (``dinov2``, ``clip_vision_model``) for a
            random-init model configured by ``model_kwargs``, with that type's default image
            processor.
        offline: never download (``local_files_only=True``, the hub client offline).
        model_kwargs: config overrides (``from_pretrained``/``AutoConfig.for_model`` keywords).
        resize: resize inputs to the processor's input size (False: keep their size).
        stages: how many evenly spaced layers give stage maps.
    """
    transformers = require("transformers", "hf", "hf")
    if not model:
        raise XmodalError(
            "backbone 'hf' needs its model option: a folder written by "
            "save_pretrained, e.g. --set teacher.encoder.hf.model=PATH"
        )
    with offline_hub(offline), _quiet(transformers):
        net, processor = _load(transformers, model, offline, copy.deepcopy(dict(model_kwargs)))
    config = getattr(net.config, "vision_config", None)
    tower, projection = (
        (net.vision_model, getattr(net, "visual_projection", None)) if config else (net, None)
    )
    config = config or net.config
    preprocess = _preprocess(processor, config, resize)
    if in_channels != 3:
        adapt_input_conv(tower, in_channels)
        for module in tower.modules():  # embeddings that check the channel count
            if getattr(module, "num_channels", None) == 3:
                module.num_channels = in_channels
        config.num_channels = in_channels
    return HFBackbone(tower, projection, config, preprocess, stages)


class HFText(TextTower):
    """A transformers dual model's text tower (``get_text_features``) behind its tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int, pad_to_max: bool) -> None:
        super().__init__(model)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_to_max = pad_to_max  # SigLIP was trained on max-length padding, without a mask

    def tokens(self, texts: list[str]) -> dict[str, Tensor]:
        """Texts -> ``input_ids`` (and ``attention_mask``) ``[P, L]``."""
        encoded = self.tokenizer(
            texts,
            padding="max_length" if self.pad_to_max else True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        """Tokens -> text embeddings ``[P, D]`` (``get_text_features``), unnormalised."""
        dual: Any = self.model  # a transformers dual model (untyped)
        out = dual.get_text_features(**tokens)
        if isinstance(out, Tensor):
            return out
        pooled: Tensor = out.pooler_output
        return pooled


def _config_json(model: str) -> dict[str, Any] | None:
    """The ``config.json`` of a model folder, or of a hub id in the local cache; None if unknown."""
    folder = Path(model).expanduser()
    path = folder / "config.json" if folder.is_dir() else None
    if path is None and _HUB_ID.fullmatch(model):
        cached = hub_cached_file(model, ["config.json"])
        path = Path(cached) if cached else None
    if path is None or not path.is_file():
        return None
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return config


def hf_text_tower_missing(model: str = "", **_options: Any) -> str | None:
    """Why ``model`` has no text tower in its image embedding's space, or None.

    None too when unknown: a hub id not in the cache is found out when the tower is built.
    """
    folder = Path(model).expanduser()
    if not model or (not folder.is_dir() and not _HUB_ID.fullmatch(model)):
        return (
            f"hf model '{model}' is not a folder of a trained dual model (a model type is "
            "built at random); give a CLIP or SigLIP folder"
        )
    config = _config_json(model)
    if config is not None and not isinstance(config.get("text_config"), dict):
        return (
            f"hf model '{model}' is vision-only (no text_config in its config.json); give a "
            "CLIP or SigLIP folder"
        )
    return None


def build_hf_text(
    model: str = "",
    offline: bool = True,
    model_kwargs: dict[str, Any] = {},  # noqa: B006  (never mutated: copied before use)
    **_image_options: Any,
) -> HFText:
    """The text tower and tokenizer of the dual model whose vision tower :func:`build_hf` takes.

    A ``CLIPModel`` or ``SiglipModel``, from the same options.
    """
    transformers = require("transformers", "hf", "hf")
    why = hf_text_tower_missing(model)
    if why:
        raise XmodalError(why)
    folder = Path(model).expanduser()
    source = str(folder) if folder.is_dir() else model
    local = offline or folder.is_dir()
    try:
        with offline_hub(offline), _quiet(transformers):
            net = transformers.AutoModel.from_pretrained(
                source,
                local_files_only=local,
                dtype=torch.float32,
                **copy.deepcopy(dict(model_kwargs)),
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
    except Exception as exc:
        raise XmodalError(
            f"transformers could not load the text tower and tokenizer of '{source}' "
            f"({first_line(exc)}); give a folder written by save_pretrained with "
            "the tokenizer's files"
        ) from None
    text_config = getattr(net.config, "text_config", None)
    if text_config is None or not callable(getattr(net, "get_text_features", None)):
        raise XmodalError(f"hf model '{source}' has no text tower (get_text_features)")
    if hasattr(net, "vision_model"):
        net.vision_model = nn.Identity()  # the image tower is the backbone's; free its weights here
    limit = int(getattr(text_config, "max_position_embeddings", 0) or 0) or 77
    max_length = min(limit, int(getattr(tokenizer, "model_max_length", limit) or limit))
    pad_to_max = str(getattr(net.config, "model_type", "")).startswith("siglip")
    return HFText(net, tokenizer, max_length, pad_to_max)


#: a tiny random DINOv2 (2 layers of width 32 at 28 x 28 pixels) for contract tests: no files
build_hf.example_options = {  # type: ignore[attr-defined]
    "model": "dinov2",
    "model_kwargs": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 28,
        "patch_size": 14,
    },
}
build_hf.weights_option = "model"  # type: ignore[attr-defined]
build_hf.text_tower = build_hf_text  # type: ignore[attr-defined]
build_hf.text_tower_missing = hf_text_tower_missing  # type: ignore[attr-defined]
build_hf.init_only = ()  # type: ignore[attr-defined]  # the folder is the architecture too
build_hf.check_options = library_check("transformers", "hf", "hf")  # type: ignore[attr-defined]
BACKBONES.add(
    "hf",
    build_hf,
    "a Hugging Face transformers vision encoder (DINOv2, CLIP, SigLIP) "
    "from a local folder, with its own image processor's preprocessing",
)
