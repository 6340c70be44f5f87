"""Encoders on every modality: shapes, finiteness, front-end units, pretrained-weight loading."""

from __future__ import annotations

import pytest
import torch
import torchvision

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES
from xmodal.encoders import create_encoder
from xmodal.encoders.frontends import DepthFrontend, LogMelFrontend

INPUTS = {
    "rgb": lambda b, s: torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8),
    "depth": lambda b, s: torch.rand(b, s, s) * 8 + 0.5,
    "audio": lambda b, s: torch.randn(b, 4000).clamp(-1, 1) * 0.5,
    "hha": lambda b, s: torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8),
    "normals": lambda b, s: (
        (torch.nn.functional.normalize(torch.randn(b, s, s, 3), dim=-1) * 127)
        .round()
        .to(torch.int8)
    ),
}
SMALL = ["resnet8", "resnet14", "resnet8x4"]


@pytest.mark.parametrize("modality", sorted(INPUTS))
@pytest.mark.parametrize("name", SMALL)
def test_small_encoders_every_modality(name, modality):
    torch.manual_seed(0)
    enc = create_encoder(name, modality)
    x = INPUTS[modality](4, 32)
    out = enc(x)
    maps = enc.forward_features(x)
    assert out.shape == (4, enc.embed_dim) and torch.isfinite(out).all()
    assert [m.shape[1] for m in maps] == enc.stage_channels
    assert maps[-1].shape[-1] < maps[0].shape[-1]  # later stages are coarser
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_backbones_any_channels(name):
    enc = create_encoder(name, "depth")
    out = enc(INPUTS["depth"](2, 64))
    assert out.shape == (2, 512 if name == "resnet18" else 2048)
    assert len(enc.forward_features(INPUTS["depth"](1, 64))) == 4


def test_depth_frontend_masks_missing_and_standardises():
    fe = DepthFrontend(mean_m=3.0, std_m=1.5, max_m=10.0)
    depth = torch.tensor([[[3.0, 4.5], [0.0, float("nan")]]])
    x = fe(depth)
    assert x.shape == (1, 1, 2, 2)
    assert torch.allclose(x[0, 0, 0], torch.tensor([0.0, 1.0]))
    assert torch.equal(x[0, 0, 1], torch.zeros(2))  # holes -> mean, never NaN
    assert fe(torch.full((1, 1, 1), 50.0)).item() == pytest.approx((10.0 - 3.0) / 1.5)


def test_logmel_frontend_peaks_at_the_tone():
    fe = LogMelFrontend(sample_rate=8000, n_mels=32)
    t = torch.arange(4000) / 8000
    low = fe(torch.sin(2 * torch.pi * 300 * t)[None])[0, 0]
    high = fe(torch.sin(2 * torch.pi * 2000 * t)[None])[0, 0]
    assert low.shape[0] == 32
    assert low.mean(1).argmax() < high.mean(1).argmax()  # the mel band follows the frequency
    assert torch.allclose(low.mean(), torch.tensor(0.0), atol=1e-4)


def test_normals_frontend_decodes_int8_and_floats_alike():
    from xmodal.encoders.frontends import NormalsFrontend

    unit = torch.nn.functional.normalize(torch.randn(2, 5, 7, 3), dim=-1)
    as_int8 = NormalsFrontend()((unit * 127).round().to(torch.int8))
    as_float = NormalsFrontend()(unit)
    assert as_int8.shape == (2, 3, 5, 7)
    assert torch.allclose(as_int8, unit.permute(0, 3, 1, 2), atol=0.5 / 127 + 1e-6)
    assert torch.equal(as_float, unit.permute(0, 3, 1, 2))
    holes = unit.clone()
    holes[0, 0, 0] = float("nan")
    assert torch.isfinite(NormalsFrontend()(holes)).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"rgb input must be \[B, H, W, 3\]"):
        create_encoder("resnet8", "rgb")(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="depth input must be"):
        create_encoder("resnet8", "depth")(torch.zeros(2, 1, 32, 32))
    with pytest.raises(XmodalError, match="did you mean 'resnet8'"):
        create_encoder("resnet9", "depth")
    with pytest.raises(XmodalError, match="unknown modality 'lidar'"):
        create_encoder("resnet8", "lidar")


def test_local_pretrained_weights_are_loaded_and_adapted(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    rgb = create_encoder("resnet18", "rgb", pretrained=str(path))
    assert torch.equal(rgb.backbone.stem[0].weight, reference.conv1.weight)
    depth = create_encoder("resnet18", "depth", pretrained=str(path))
    expected = reference.conv1.weight.mean(1, keepdim=True) * 3.0
    assert torch.allclose(depth.backbone.stem[0].weight, expected)
    assert torch.equal(depth.backbone.stages[3][1].conv2.weight, reference.layer4[1].conv2.weight)


def test_bad_pretrained_files_name_the_file(tmp_path):
    with pytest.raises(XmodalError, match="does not exist"):
        create_encoder("resnet18", "rgb", pretrained=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(XmodalError, match="junk.pth' could not be read"):
        create_encoder("resnet18", "rgb", pretrained=str(junk))
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(1)}, other)
    with pytest.raises(XmodalError, match="not a torchvision resnet18 state dict"):
        create_encoder("resnet18", "rgb", pretrained=str(other))


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache, and no network here

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(XmodalError, match="teacher.encoder.resnet18.pretrained=PATH"):
        create_encoder("resnet18", "rgb", pretrained="imagenet")


def test_registry_lists_cifar_family():
    assert BACKBONES.names("resnet*x4") == ["resnet32x4", "resnet8x4"]
