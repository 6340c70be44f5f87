"""Backbones from timm, open_clip and Hugging Face transformers.

Tiny random models built with each library, saved to local files, loaded back through xmodal
offline, and compared with the library's own preprocessing + forward; as students; through an
export; and their errors.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from xmodal.core.errors import XmodalError
from xmodal.encoders import create_encoder
from xmodal.encoders.export import export_encoder, load_encoder

pytestmark = pytest.mark.usefixtures("single_thread")

timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

# means and stds unlike ImageNet's and CLIP's: the encoder must take the model's own
OWN_MEAN, OWN_STD = (0.3, 0.5, 0.7), (0.2, 0.3, 0.4)


def _images(size: tuple[int, int], batch: int = 3, seed: int = 0) -> torch.Tensor:
    """uint8 RGB ``[B, H, W, 3]`` (what the rgb front end takes)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *size, 3), generator=g, dtype=torch.uint8)


def _pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(image.numpy()) for image in images]


def _embed(encoder, images):
    with torch.no_grad():
        return encoder.eval()(images)


# ---- timm ------------------------------------------------------------------------------------


def _timm_reference(name: str, tmp_path, **kwargs):
    """A random timm model, saved as a state dict file."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _timm_library_features(model, images):
    """Timm's own eval transform + the model's pre-logits features.

    The transform uses crop_pct 1: xmodal resizes the whole image, never crops.
    """
    data = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**{**data, "crop_pct": 1.0})
    batch = torch.stack([transform(image) for image in _pil(images)])
    with torch.no_grad():
        return model.forward_head(model.forward_features(batch), pre_logits=True), batch


@pytest.mark.parametrize("name", ["test_vit", "test_resnet"])
def test_timm_teacher_matches_timms_own_preprocessing_and_forward(name, tmp_path):
    reference, path = _timm_reference(name, tmp_path)
    encoder = create_encoder("timm", "rgb", model=name, weights=str(path))
    cfg = reference.pretrained_cfg  # test_vit's mean and std are 0.5: not ImageNet's
    assert encoder.backbone.preprocess.mean.tolist() == pytest.approx(cfg["mean"])
    assert encoder.backbone.preprocess.std.tolist() == pytest.approx(cfg["std"])
    size = tuple(reference.pretrained_cfg["input_size"][-2:])
    images = _images(size)
    expected, batch = _timm_library_features(reference, images)
    assert not encoder.frontend.normalise and encoder.backbone.pixel_input
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    maps = encoder.forward_features(images)
    assert [m.shape[1] for m in maps] == encoder.stage_channels
    with torch.no_grad():
        last = reference.forward_intermediates(
            batch, indices=[encoder.backbone._indices[-1]], intermediates_only=True, norm=True
        )[-1]
    torch.testing.assert_close(maps[-1].detach(), last, rtol=0, atol=1e-5)


def test_timm_weights_folder_carries_its_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(
        "test_vit",
        pretrained_cfg_overlay={"mean": OWN_MEAN, "std": OWN_STD, "interpolation": "bilinear"},
    ).eval()
    folder = tmp_path / "test_vit"
    timm.models.save_for_hf(
        model, folder, safe_serialization=True
    )  # config.json + model.safetensors
    encoder = create_encoder("timm", "rgb", model="test_vit", weights=str(folder))
    assert encoder.backbone.preprocess.mean.tolist() == pytest.approx(OWN_MEAN)
    assert encoder.backbone.preprocess._mode == "bilinear"
    images = _images((160, 160))
    expected, _ = _timm_library_features(model, images)
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    with pytest.raises(XmodalError, match="holds a 'test_vit'.*set model=test_vit"):
        create_encoder("timm", "rgb", model="test_resnet", weights=str(folder))


# ---- open_clip -------------------------------------------------------------------------------

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def _open_clip_folder(tmp_path):
    """A tiny random open_clip model saved as open_clip saves one: config + safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", **TINY_CLIP).eval()
    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    preprocess = {
        "mean": list(OWN_MEAN),
        "std": list(OWN_STD),
        "interpolation": "bilinear",
        "resize_mode": "shortest",
    }
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": preprocess})
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    return folder


def test_open_clip_teacher_matches_open_clips_own_preprocessing_and_forward(tmp_path):
    folder = _open_clip_folder(tmp_path)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    encoder = create_encoder("open_clip", "rgb", model=f"local-dir:{folder}")
    assert encoder.backbone.preprocess.mean.tolist() == pytest.approx(OWN_MEAN)
    images = _images((32, 32))
    batch = torch.stack([preprocess(image) for image in _pil(images)])
    with torch.no_grad():
        expected = model.eval().encode_image(batch)
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    maps = encoder.forward_features(images)
    assert [tuple(m.shape) for m in maps] == [(3, 32, 4, 4)] * 2 and encoder.embed_dim == 16


def test_open_clip_checkpoint_file_loads_offline(tmp_path):
    folder = _open_clip_folder(tmp_path)
    checkpoint = folder / "open_clip_model.safetensors"
    encoder = create_encoder(
        "open_clip", "rgb", model="ViT-B-32", pretrained=str(checkpoint), model_kwargs=TINY_CLIP
    )
    model, _, preprocess = open_clip.create_model_and_transforms(  # the name's preprocessing
        "ViT-B-32", pretrained=str(checkpoint), **TINY_CLIP
    )
    images = _images((32, 32))
    batch = torch.stack([preprocess(image) for image in _pil(images)])
    with torch.no_grad():
        expected = model.eval().encode_image(batch)
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)


# ---- Hugging Face transformers ---------------------------------------------------------------


def _hf_folder(tmp_path, kind: str):
    """A tiny random transformers vision model + its image processor, saved with save_pretrained."""
    vision = dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=7,
    )
    torch.manual_seed(0)
    if kind == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(**vision))
        processor = transformers.BitImageProcessor(
            size={"shortest_edge": 28},
            crop_size={"height": 28, "width": 28},
            image_mean=list(OWN_MEAN),
            image_std=list(OWN_STD),
        )
    elif kind == "dinov2_registers":  # 1 class + 2 register tokens before the patches
        model = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(**vision, num_register_tokens=2)
        )
        processor = transformers.BitImageProcessor(
            size={"shortest_edge": 28},
            crop_size={"height": 28, "width": 28},
            image_mean=list(OWN_MEAN),
            image_std=list(OWN_STD),
        )
    elif kind == "siglip_vision":  # no class token; pooled by its attention head
        model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**vision))
        processor = transformers.SiglipImageProcessor(
            size={"height": 28, "width": 28}, image_mean=list(OWN_MEAN), image_std=list(OWN_STD)
        )
    elif kind == "clip_vision":
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision))
        processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": 28},
            crop_size={"height": 28, "width": 28},
            image_mean=list(OWN_MEAN),
            image_std=list(OWN_STD),
        )
    else:  # the whole CLIP: its vision tower and visual projection are kept
        text = dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=64,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
        )
        model = transformers.CLIPModel(
            transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
        )
        processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": 28},
            crop_size={"height": 28, "width": 28},
            image_mean=list(OWN_MEAN),
            image_std=list(OWN_STD),
        )
    folder = tmp_path / kind
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model.eval(), processor, folder


@pytest.mark.parametrize(
    "kind", ["dinov2", "dinov2_registers", "siglip_vision", "clip_vision", "clip"]
)
def test_hf_teacher_matches_the_processor_and_forward(kind, tmp_path):
    model, processor, folder = _hf_folder(tmp_path, kind)
    encoder = create_encoder("hf", "rgb", model=str(folder))
    images = _images((28, 28))
    batch = processor(images=list(images.numpy()), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        if kind == "clip":
            expected = model.get_image_features(pixel_values=batch).pooler_output
            out = model.vision_model(pixel_values=batch)
        else:
            out = model(pixel_values=batch)
            expected = out.pooler_output
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    assert encoder.embed_dim == expected.shape[1]
    maps = encoder.forward_features(images)
    assert [tuple(m.shape) for m in maps] == [(3, 32, 4, 4)] * 3
    tokens = out.last_hidden_state[:, -16:]  # class and register tokens dropped: 4 x 4 patches
    torch.testing.assert_close(
        maps[-1].detach().flatten(2).transpose(1, 2), tokens, rtol=0, atol=1e-5
    )


# ---- the same models as students, through exports and configs --------------------------------


def _student_options(tmp_path) -> dict[str, dict]:
    _, path = _timm_reference("test_vit", tmp_path)
    return {
        "timm": {"model": "test_vit", "weights": str(path)},
        "open_clip": {"model": f"local-dir:{_open_clip_folder(tmp_path)}"},
        "hf": {"model": str(_hf_folder(tmp_path, "dinov2")[2])},
    }


def test_pretrained_backbones_train_as_depth_students_and_export(tmp_path):
    from xmodal.pipelines.config import EncoderConfig

    for name, options in _student_options(tmp_path).items():
        EncoderConfig.of(name, **options)  # accepted as a config's encoder
        torch.manual_seed(0)
        student = create_encoder(name, "depth", **options).train()
        assert not student.backbone.pixel_input  # depth is resized, never pixel-normalised
        depth = torch.rand(2, 20, 20) * 4 + 0.5
        student(depth).square().sum().backward()
        grads = [p.grad for p in student.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        # an export holds the weights and the preprocessing; init-only weights are not read back
        export_encoder(student.eval(), tmp_path / f"export-{name}", name, options, {})
        if name == "timm":
            (tmp_path / "test_vit.pth").unlink()
        loaded = load_encoder(tmp_path / f"export-{name}")
        with torch.no_grad():
            torch.testing.assert_close(loaded(depth), student(depth), rtol=0, atol=1e-6)


def test_an_rgb_student_keeps_the_models_normalisation_through_an_export(tmp_path):
    folder = _open_clip_folder(tmp_path)
    encoder = create_encoder(
        "open_clip",
        "rgb",
        model="ViT-B-32",
        pretrained=str(folder / "open_clip_model.safetensors"),
        model_kwargs=TINY_CLIP,
    )
    with torch.no_grad():
        encoder.backbone.preprocess.mean.copy_(torch.tensor(OWN_MEAN))  # as a trained tag's
    export_encoder(
        encoder.eval(),
        tmp_path / "export",
        "open_clip",
        {"model": "ViT-B-32", "pretrained": "laion-like-tag", "model_kwargs": TINY_CLIP},
        {},
    )
    loaded = load_encoder(tmp_path / "export")
    assert loaded.backbone.preprocess.mean.tolist() == pytest.approx(OWN_MEAN)
    images = _images((32, 32))
    torch.testing.assert_close(_embed(loaded, images), _embed(encoder, images), rtol=0, atol=1e-6)


def test_hha_and_other_front_ends_keep_their_own_scaling():
    from xmodal.core.registry import BACKBONES
    from xmodal.encoders.base import example_options

    hha = create_encoder("timm", "hha", **example_options(BACKBONES.get("timm")))
    assert not hha.backbone.pixel_input
    assert create_encoder("resnet8", "rgb").frontend.normalise  # ImageNet-normalised as before


def test_resizing_uses_the_models_interpolation():
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    from xmodal.encoders.library_backbone import ModelPreprocess

    x = torch.rand(2, 3, 45, 37)
    for mode, tv in (
        ("bicubic", InterpolationMode.BICUBIC),
        ("bilinear", InterpolationMode.BILINEAR),
    ):
        prep = ModelPreprocess(OWN_MEAN, OWN_STD, (24, 30), mode)
        expected = F.resize(x, [24, 30], interpolation=tv, antialias=True)
        torch.testing.assert_close(prep(x), expected, rtol=0, atol=1e-5)
        mean, std = torch.tensor(OWN_MEAN).view(1, 3, 1, 1), torch.tensor(OWN_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(prep(x, pixels=True), (expected - mean) / std, rtol=0, atol=1e-5)
        assert ModelPreprocess(OWN_MEAN, OWN_STD, (24, 30), mode, resize=False)(x).shape == x.shape


# ---- errors ----------------------------------------------------------------------------------


def test_missing_weights_give_one_clear_line(tmp_path):
    missing = str(tmp_path / "nothing.safetensors")
    cases = [
        ("timm", {"model": "test_vit", "weights": missing}, "timm weights '.*' do not exist"),
        (
            "open_clip",
            {"model": "ViT-B-32", "pretrained": missing},
            "checkpoint '.*' does not exist",
        ),
        ("open_clip", {"model": f"local-dir:{tmp_path}"}, "has no open_clip_config.json"),
        (
            "open_clip",
            {"model": "ViT-B-32", "pretrained": "no-such-tag"},
            "no pretrained tag 'no-such-tag'",
        ),
        ("hf", {"model": str(tmp_path / "no-folder")}, "folder '.*' does not exist"),
        ("hf", {}, "needs its model option"),
    ]
    for name, options, message in cases:
        with pytest.raises(XmodalError, match=message) as info:
            create_encoder(name, "rgb", **options)
        assert "\n" not in str(info.value)
    folder = _hf_folder(tmp_path, "dinov2")[2]
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(XmodalError, match="has no image processor config"):
        create_encoder("hf", "rgb", model=str(folder))


def _in_hub_cache(cache, repo_id: str, filename: str, state: dict) -> None:
    """Write ``state`` where the Hugging Face hub cache keeps ``repo_id``'s ``filename``."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / filename))


def test_the_libraries_own_weights_come_from_the_local_cache_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    offline_before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = timm.create_model("test_vit.r160_in1k").eval()
    _in_hub_cache(tmp_path, "timm/test_vit.r160_in1k", "model.safetensors", model.state_dict())
    encoder = create_encoder("timm", "rgb", model="test_vit.r160_in1k", weights="pretrained")
    images = _images((160, 160))
    expected, _ = _timm_library_features(model, images)
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    # an open_clip tag (tiny weights in its repo's place): the tag's preprocessing comes along
    clip = open_clip.create_model("ViT-B-32", **TINY_CLIP).eval()
    _in_hub_cache(
        tmp_path,
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "open_clip_model.safetensors",
        clip.state_dict(),
    )
    encoder = create_encoder(
        "open_clip", "rgb", model="ViT-B-32", pretrained="laion2b_s34b_b79k", model_kwargs=TINY_CLIP
    )
    tag = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    assert encoder.backbone.preprocess.mean.tolist() == pytest.approx(tag["mean"])
    images = _images((32, 32))
    with torch.no_grad():
        pixels = images.permute(0, 3, 1, 2) / 255.0
        expected = clip.encode_image(
            (pixels - torch.tensor(tag["mean"]).view(1, 3, 1, 1))
            / torch.tensor(tag["std"]).view(1, 3, 1, 1)
        )
    torch.testing.assert_close(_embed(encoder, images), expected, rtol=0, atol=1e-5)
    assert constants.HF_HUB_OFFLINE == offline_before  # offline only while building


def test_library_weights_offline_never_download(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(XmodalError, match="not in the local cache .*offline=false"):
        create_encoder("timm", "rgb", model="test_vit.r160_in1k", weights="pretrained")
    with pytest.raises(XmodalError, match="not in the local cache .*offline=false"):
        create_encoder("open_clip", "rgb", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(XmodalError, match="nor in the local Hugging Face cache"):
        create_encoder("hf", "rgb", model="facebook/dinov2-small")


@pytest.mark.parametrize(
    "name, module, extra",
    [
        ("timm", "timm", "timm"),
        ("open_clip", "open_clip", "open_clip"),
        ("hf", "transformers", "hf"),
    ],
)
def test_a_missing_library_names_the_extra(name, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(XmodalError, match=rf"pip install 'xmodal\[{extra}\]'") as info:
        create_encoder(name, "rgb", model="x")
    assert "\n" not in str(info.value)


def test_import_xmodal_does_not_import_the_libraries():
    code = (
        "import sys, xmodal; names = xmodal.list_components('backbones'); "
        "assert {'timm', 'open_clip', 'hf'} <= set(names), names; "
        "print(sorted(m for m in ('timm', 'open_clip', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ---- xmodal probe ----------------------------------------------------------------------------

TINY_SCENES = [
    "data.scenes.image_size=16",
    "data.scenes.num_train=24",
    "data.scenes.num_val=12",
    "data.scenes.num_test=12",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def test_xmodal_probe_takes_a_pretrained_library_model(tmp_path, capsys):
    from xmodal.cli.main import main

    _, path = _timm_reference("test_vit", tmp_path)
    sets = [arg for item in TINY_SCENES for arg in ("--set", item)]
    out = tmp_path / "probe"
    assert (
        main(
            [
                "probe",
                "timm",
                "--option",
                "model=test_vit",
                "--pretrained",
                str(path),
                "--modality",
                "rgb",
                "--probes",
                "knn",
                "--data",
                "scenes",
                "--out",
                str(out),
                *sets,
            ]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} == {("rgb", "timm", "knn")}
    meta = json.loads((out / "probe-targets" / "timm" / "encoder.json").read_text())
    assert meta["backbone_options"] == {"model": "test_vit", "weights": str(path)}
    capsys.readouterr()
    assert (
        main(
            [
                "probe",
                "timm",
                "--option",
                "model=test_vit",
                "--pretrained",
                str(tmp_path / "gone.pth"),
                "--modality",
                "rgb",
                "--data",
                "scenes",
                "--out",
                str(out),
                *sets,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not exist" in err
    assert main(["probe", "timm", "--option", "modle=test_vit", "--out", str(out)]) == 2
    assert "did you mean 'model'" in capsys.readouterr().err


def test_run_caches_key_on_the_weights_files_and_folders(tmp_path):
    from xmodal.pipelines.config import EncoderConfig
    from xmodal.pipelines.stages.common import _pretrained_digest

    _, path = _timm_reference("test_vit", tmp_path)
    folder = _hf_folder(tmp_path, "dinov2")[2]
    file_key = _pretrained_digest(EncoderConfig.of("timm", model="test_vit", weights=str(path)))
    hf = EncoderConfig.of("hf", model=str(folder))
    folder_key = _pretrained_digest(hf)
    assert file_key and folder_key and file_key != folder_key
    assert _pretrained_digest(EncoderConfig.of("timm", model="test_vit")) is None
    (folder / "preprocessor_config.json").write_text("{}")  # another preprocessing: recompute
    assert _pretrained_digest(hf) != folder_key
