"""Any timm image model as an xmodal backbone (``timm``), pretrained weights from local files.

Stage maps come from timm's ``forward_intermediates``: every feature stage of a CNN (strides 2
to 32 for a ResNet), or ``stages`` evenly spaced blocks of a ViT (patch tokens ``[B, C, H, W]``,
class and register tokens dropped, the final norm applied), coarsest or deepest last. The
embedding is the model's own pooled output before its classifier (``forward_head(...,
pre_logits=True)``: global average pooling for CNNs, the class token or average of the tokens
after ``fc_norm`` for ViTs, as the model was trained), or the average of the last map when the
model has no pooling. The classifier itself is dropped (``num_classes=0``).

Preprocessing is timm's ``resolve_data_config`` of the model, i.e. its ``pretrained_cfg``
(``mean``, ``std``, ``input_size``, ``interpolation``; of the tag named in ``model``, or of the
weights folder's ``config.json``), see :mod:`xmodal.encoders.library_backbone`. ``crop_pct`` is
not applied: the whole image is resized to ``input_size``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders.library_backbone import (
    LibraryBackbone,
    ModelPreprocess,
    evenly_spaced,
    first_line,
    hub_cached_file,
    missing_library,
    offline_hub,
    require,
    spatial_mean,
)

#: ``weights`` value for timm's own weights of the model's tag (Hugging Face hub or URL cache)
LIBRARY_WEIGHTS = "pretrained"
#: the weights file of a folder saved by timm (``save_for_hf``), in order of preference
_FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: what a folder's pretrained_cfg gives: preprocessing, and what timm needs to load the weights
#: (keys that change the architecture, such as fixed_input_size, are left to model_kwargs)
_FOLDER_CFG_KEYS = (
    "tag",
    "mean",
    "std",
    "input_size",
    "test_input_size",
    "interpolation",
    "crop_pct",
    "test_crop_pct",
    "crop_mode",
    "num_classes",
    "label_offset",
    "first_conv",
    "classifier",
)


class TimmBackbone(LibraryBackbone):
    """A timm model without its classifier, behind its own preprocessing."""

    def __init__(self, net: Any, preprocess: ModelPreprocess, stages: int) -> None:
        super().__init__(preprocess)
        self.net = net  # a timm model (untyped): forward_intermediates, forward_head, ...
        info = [dict(f) for f in net.feature_info]
        uniform = len({f["reduction"] for f in info}) == 1  # a ViT: every block at one stride
        self._indices = (
            evenly_spaced(len(info), stages)
            if uniform and len(info) > 1
            else list(range(len(info)))
        )
        self.stage_channels = [int(info[i]["num_chs"]) for i in self._indices]
        self.out_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        accepted = inspect.signature(net.forward_intermediates).parameters
        self._options = {k: v for k, v in (("norm", True), ("output_fmt", "NCHW")) if k in accepted}

    def stage_maps(self, x: Tensor) -> list[Tensor]:
        """Model input -> the chosen stages' maps ``[B, C_i, H_i, W_i]``, coarsest last."""
        return list(
            self.net.forward_intermediates(
                x, indices=self._indices, intermediates_only=True, **self._options
            )
        )

    def embedding(self, x: Tensor) -> Tensor:
        """Model input -> its pooled pre-logits ``[B, out_dim]`` (``forward_head``)."""
        return spatial_mean(self.net.forward_head(self.net.forward_features(x), pre_logits=True))


def _weights_source(timm: Any, model: str, weights: str, offline: bool) -> dict[str, Any]:
    """``create_model``'s keyword arguments that load the ``weights`` option."""
    if not weights:
        return {"pretrained": False}
    if weights == LIBRARY_WEIGHTS:
        return {"pretrained": True, **_cached_library_weights(timm, model, offline)}
    path = Path(weights).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise XmodalError(
                f"timm weights folder '{path}' has no config.json; give a folder "
                "saved by timm (timm.models.save_for_hf: config.json + "
                "model.safetensors) or the weights file itself"
            )
        config = json.loads(config_file.read_text())
        architecture = str(config.get("architecture", ""))
        if architecture.split(".")[0] != model.split(".")[0]:
            raise XmodalError(
                f"timm weights folder '{path}' holds a '{architecture}' (config.json), "
                f"but the backbone's model is '{model}'; set model={architecture}"
            )
        files = [path / n for n in _FOLDER_WEIGHTS if (path / n).is_file()] or sorted(
            p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".bin")
        )
        if not files:
            raise XmodalError(
                f"timm weights folder '{path}' holds no weights file ({', '.join(_FOLDER_WEIGHTS)})"
            )
        # the folder gives the weights and their pretrained_cfg (preprocessing); the architecture
        # is always model + model_kwargs, so an export rebuilds it without the folder
        saved = config.get("pretrained_cfg") or {}
        overlay = {k: saved[k] for k in _FOLDER_CFG_KEYS if k in saved}
        overlay.update(file=str(files[0]), hf_hub_id=None, url=None, source=None)
        return {"pretrained": True, "pretrained_cfg_overlay": overlay}
    if not path.is_file():
        raise XmodalError(
            f"timm weights '{weights}' do not exist; set weights to a weights file "
            "(.safetensors, .pth, .bin), a folder saved by timm, "
            f"'{LIBRARY_WEIGHTS}' (timm's own, from the local cache) or '' (random init)"
        )
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}


def _cached_library_weights(timm: Any, model: str, offline: bool) -> dict[str, Any]:
    """``create_model`` arguments that find timm's own weights for ``model`` offline.

    Offline: where they lie in the local caches (an error if nowhere). Online: nothing to add
    (timm downloads them).
    """
    try:
        cfg = timm.models.get_pretrained_cfg(model, allow_unregistered=False)
    except Exception:
        cfg = None
    if cfg is None:
        raise XmodalError(
            f"timm has no pretrained weights for '{model}'; name a tagged model "
            "(timm.list_pretrained()) or give a weights file"
        )
    if not offline:
        return {}
    if cfg.hf_hub_id:
        names = (
            [cfg.hf_hub_filename]
            if cfg.hf_hub_filename
            else ["model.safetensors", "pytorch_model.bin"]
        )
        if hub_cached_file(cfg.hf_hub_id, names):
            return {}  # timm reads it from the cache (the hub client is offline meanwhile)
        where = f"Hugging Face repo '{cfg.hf_hub_id}'"
    elif cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if cached.is_file():
            return {"pretrained_cfg_overlay": {"file": str(cached)}}
        where = cfg.url
    else:
        where = "nowhere (no hub id or URL)"
    raise XmodalError(
        f"timm weights for '{model}' are not in the local cache (from {where}); "
        "download them once with the backbone option offline=false, or give "
        "weights=PATH to a local file"
    )


class _MissingKeys(logging.Handler):
    """Collects timm's 'Missing keys' report of a pretrained load (it only logs it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep a 'Missing keys' message."""
        if record.getMessage().startswith("Missing keys"):
            self.messages.append(record.getMessage())


def build_timm(
    in_channels: int,
    model: str = "resnet50",
    weights: str = "",
    offline: bool = True,
    model_kwargs: dict[str, Any] = {},  # noqa: B006  (never mutated: copied before use)
    resize: bool = True,
    stages: int = 4,
) -> TimmBackbone:
    """Any timm image model (``timm.create_model``), weights from a local file, folder or cache.

    Args:
        in_channels: timm's ``in_chans`` (pretrained RGB filters are adapted by timm).
        model: a ``timm.create_model`` name, optionally with its tag
            (``vit_small_patch14_dinov2.lvd142m``); the tag's ``pretrained_cfg`` gives the
            preprocessing.
        weights: a weights file (``.safetensors``/``.pth``/``.bin``), a folder saved by timm
            (``config.json`` + weights), ``pretrained`` (timm's own weights for the tag, from
            the local cache unless ``offline`` is false) or ``""`` (random init).
        offline: never download (the Hugging Face hub client reads only its cache).
        model_kwargs: more ``create_model`` arguments (``img_size``, ``drop_path_rate``, ...).
        resize: resize inputs to the model's ``input_size`` (False: keep their size).
        stages: how many evenly spaced blocks of a ViT give stage maps.
    """
    timm = require("timm", "timm", "timm")
    model_kwargs = copy.deepcopy(dict(model_kwargs))  # the library may change what it is given
    source = _weights_source(timm, model, weights, offline)
    catcher = _MissingKeys()
    logger = logging.getLogger("timm.models._builder")
    logger.addHandler(catcher)
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        with offline_hub(offline):
            net = timm.create_model(
                model, in_chans=in_channels, num_classes=0, **{**model_kwargs, **source}
            )
    except XmodalError:
        raise
    except Exception as exc:
        raise XmodalError(
            f"timm could not build '{model}' with weights '{weights or 'none'}' ({first_line(exc)})"
        ) from None
    finally:
        logger.removeHandler(catcher)
        logger.setLevel(before)
    if catcher.messages:
        raise XmodalError(
            f"timm weights '{weights}' do not fit '{model}': "
            f"{catcher.messages[0].split(' discovered')[0]}"
        )
    if not hasattr(net, "forward_intermediates"):
        raise XmodalError(
            f"timm model '{model}' has no forward_intermediates, so its stage maps "
            "are unknown; choose another model"
        )
    timm_data = require("timm.data", "timm", "timm")
    data = timm_data.resolve_data_config({}, model=net)  # timm's own eval preprocessing
    preprocess = ModelPreprocess(
        data["mean"], data["std"], tuple(data["input_size"][-2:]), data["interpolation"], resize
    )
    return TimmBackbone(net, preprocess, stages)


def fetch_command(model: str, weights: str) -> str:
    """The shell command that saves timm's own weights of ``model`` at ``weights``.

    ``weights`` is a folder saved by timm, or a ``.safetensors``/``.pth``/``.bin`` file; the
    command runs on a machine with network.
    """
    if Path(weights).suffix.lower() in (".safetensors", ".pth", ".bin"):
        save = (
            "from safetensors.torch import save_file as save; "
            if weights.lower().endswith(".safetensors")
            else "from torch import save; "
        )
        code = (
            f"import timm; from pathlib import Path; {save}p = Path({weights!r}); "
            "p.parent.mkdir(parents=True, exist_ok=True); "
            f"save(timm.create_model({model!r}, pretrained=True).state_dict(), p)"
        )
    else:
        code = (
            f"import timm; timm.models.save_for_hf(timm.create_model({model!r}, pretrained=True), "
            f"{weights!r}, safe_serialization=True)"
        )
    return f'python3 -c "{code}"'


def check_timm_options(options: dict[str, Any], key: str) -> str | None:
    """At config load, without importing timm: what stops the build, or None.

    timm not installed, or a ``weights`` path that does not exist (with the command that makes
    it).
    """
    missing = missing_library("timm", "timm", "timm")
    if missing:
        return f"{key}.name: {missing}"
    weights = options.get("weights", "")
    if not isinstance(weights, str) or weights in ("", LIBRARY_WEIGHTS):
        return None
    path = Path(weights).expanduser()
    if path.exists():
        return None
    model = str(options.get("model") or inspect.signature(build_timm).parameters["model"].default)
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return (
        f"{key}.timm.weights: timm weights '{weights}' do not exist{where}; get them on a "
        f"machine with network with: {fetch_command(model, weights)} and copy them here, "
        f"or point --set {key}.timm.weights=PATH at a weights file or a folder saved by timm"
    )


build_timm.example_options = {"model": "test_vit"}  # type: ignore[attr-defined]  # tiny
build_timm.weights_option = "weights"  # type: ignore[attr-defined]
build_timm.init_only = ("weights",)  # type: ignore[attr-defined]  # an export holds its weights
build_timm.check_options = check_timm_options  # type: ignore[attr-defined]
BACKBONES.add(
    "timm",
    build_timm,
    "any timm image model (timm.create_model), with its own "
    "preprocessing; weights from a local file, folder or cache",
)
