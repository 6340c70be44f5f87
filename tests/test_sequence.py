"""The ``sequence`` layout: front end, ``temporal_conv``, layout checks, ``paired`` sequences.

Layouts are checked at registration and at load; ``paired`` manifests with ``[C, T]`` ``.npy``
columns are followed from the reader to a whole run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.io import write_png

from xmodal.cli.main import main
from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES, FRONTENDS
from xmodal.data.paired import PairedOptions
from xmodal.data.paired.readers import (
    SampleError,
    read_sequence,
    reader_for,
    sequence_frontend_kwargs,
)
from xmodal.encoders import create_encoder
from xmodal.encoders.base import LAYOUTS, Encoder, backbone_for, check_layout, layout_example
from xmodal.encoders.frontends import PointsFrontend, SequenceFrontend
from xmodal.encoders.pointnet import build_pointnet
from xmodal.encoders.temporal_conv import build_temporal_conv, receptive_field
from xmodal.pipelines.config import EncoderConfig
from xmodal.pipelines.stages.common import encoder_for

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- temporal_conv


@pytest.mark.parametrize("steps", [1, 7, 100])
def test_temporal_conv_keeps_time_and_embeds_any_length(steps):
    torch.manual_seed(0)
    net = build_temporal_conv(in_channels=6, width=8, depth=3)
    x = torch.randn(2, 6, steps)
    maps = net.forward_features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 8, steps)] * 3
    assert net.stage_channels == [8, 8, 8] and net.out_dim == 8
    encoder = create_encoder("temporal_conv", "sequence", {"channels": 6}, width=8, depth=3)
    out = encoder(x)
    assert out.shape == (2, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(out, encoder.forward_features(x)[-1].mean(-1))


def test_temporal_conv_gradients_reach_every_parameter():
    torch.manual_seed(0)
    encoder = create_encoder("temporal_conv", "sequence", {"channels": 3}, width=8, dropout=0.1)
    encoder(torch.randn(4, 3, 40)).square().sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("depth, kernel_size", [(1, 3), (2, 3), (3, 3), (4, 3), (2, 5)])
def test_receptive_field_grows_with_dilation(depth, kernel_size):
    """In eval mode, output step t depends on exactly the input steps near t.

    With fixed norm statistics, those within (k - 1)(2**depth - 1) of t: 3, 7, 15, 31 steps each
    side for k = 3.
    """
    torch.manual_seed(0)
    net = build_temporal_conv(1, width=16, depth=depth, kernel_size=kernel_size).eval()
    steps, t = 200, 100
    x = torch.randn(1, 1, steps, requires_grad=True)
    net.forward_features(x)[-1][0, :, t].sum().backward()
    assert x.grad is not None
    seen = x.grad[0, 0].nonzero().flatten()
    reach = (kernel_size - 1) * (2**depth - 1)
    assert (seen.min().item(), seen.max().item()) == (t - reach, t + reach)
    assert net.receptive_field == receptive_field(depth, kernel_size) == 2 * reach + 1
    assert receptive_field(4, 3) == 61  # the default


def test_temporal_conv_refuses_a_wrong_input_shape_in_one_line():
    net = build_temporal_conv(in_channels=6, width=4, depth=1)
    for bad in (torch.randn(2, 50), torch.randn(2, 5, 50), torch.randn(2, 6, 0)):
        with pytest.raises(ValueError) as caught:
            net.forward_features(bad)
        message = str(caught.value)
        assert message.startswith("temporal_conv takes sequences [B, C=6, T >= 1]")
        assert str(list(bad.shape)) in message and "\n" not in message


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": 0}, "width=0 (must be an integer >= 1)"),
        ({"depth": 1.5}, "depth=1.5 (must be an integer >= 1)"),
        ({"kernel_size": 4}, "kernel_size=4 (must be an odd integer >= 3)"),
        ({"norm": "layer"}, "norm='layer' (must be one of 'batch', 'group')"),
        ({"dropout": 1.0}, "dropout=1.0 (must be in [0, 1))"),
    ],
)
def test_temporal_conv_options_are_typed_and_ranged(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_temporal_conv(3, **options)


def test_group_norm_makes_samples_independent_of_their_batch():
    torch.manual_seed(0)
    net = build_temporal_conv(2, width=8, depth=2, norm="group")
    x = torch.randn(3, 2, 30)
    torch.testing.assert_close(net.forward_features(x[:1])[-1], net.forward_features(x)[-1][:1])


# ----------------------------------------------------------------------------- sequence front end


def test_sequence_front_end_standardises_each_channel_and_fills_gaps():
    frontend = SequenceFrontend(channels=2, mean=[1.0, -2.0], std=[2.0, 0.5])
    x = torch.tensor([[[1.0, 3.0, float("nan")], [-2.0, -1.5, float("inf")]]], dtype=torch.float64)
    out = frontend(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]))
    plain = SequenceFrontend(channels=2)  # no constants: values as given
    assert torch.equal(plain(x[..., :2]), x[..., :2].float())
    assert SequenceFrontend(channels=3, std=[2.0])(torch.full((1, 3, 4), 4.0)).eq(2.0).all()


def test_sequence_front_end_checks_its_options_and_input():
    with pytest.raises(ValueError, match=r"std=\[1.0, 0.0\] \(must be a list of numbers > 0\)"):
        SequenceFrontend(channels=2, std=[1.0, 0.0])
    with pytest.raises(
        ValueError, match="sequence front end: mean has 2 values; give one per channel .channels=3."
    ):
        SequenceFrontend(channels=3, mean=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"channels=0 \(must be an integer >= 1\)"):
        SequenceFrontend(channels=0)
    with pytest.raises(
        ValueError, match=r"sequence input must be \[B, C=6, T >= 1\].*\[2, 50, 6\]"
    ):
        SequenceFrontend(channels=6)(torch.randn(2, 50, 6))  # time first: the usual slip


# ----------------------------------------------------------------------------- layouts


def test_every_registered_front_end_and_backbone_declares_a_known_layout():
    assert set(LAYOUTS) == {"image", "points", "sequence"}
    for name in FRONTENDS.names():
        check_layout("front end", name, FRONTENDS.get(name))
    for name in BACKBONES.names():
        check_layout("backbone", name, BACKBONES.get(name))
    assert FRONTENDS.get("sequence").layout == BACKBONES.get("temporal_conv").layout == "sequence"


def _factory(layout: object, module_layout: object = None):
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out_dim, self.stage_channels = 4, [4]
            if module_layout is not None:
                self.layout = module_layout

        def forward_features(self, x):
            return [x]

    def build(in_channels: int, width: int = 4) -> nn.Module:
        return Tiny()

    build.__module__ = "some_plugin.backbones"
    build.layout = layout
    return build


def test_a_backbone_layout_is_checked_at_registration():
    BACKBONES.check_plugin("fine", _factory("sequence"))
    with pytest.raises(XmodalError) as caught:
        BACKBONES.check_plugin("bad", _factory("timeseries"), "plugin 'bad' from package 'p'")
    message = str(caught.value)
    assert "plugin 'bad' from package 'p' breaks the backbone contract" in message
    assert "backbone 'bad'.layout must be one of 'image' [B, C, H, W], 'points'" in message
    assert "got 'timeseries'" in message and "\n" not in message
    with pytest.raises(XmodalError, match="by its factory but its module says 'points'"):
        BACKBONES.check_plugin("split", _factory("sequence", "points"))


def test_a_front_end_layout_is_checked_at_registration():
    class Odd(SequenceFrontend):
        layout = "1d"

    with pytest.raises(XmodalError, match=r"front end 'odd'.layout must be one of .*got '1d'"):
        FRONTENDS.check_plugin("odd", Odd)


def test_a_pair_of_different_layouts_is_refused():
    with pytest.raises(
        XmodalError,
        match=r"backbone 'pointnet' takes points input \[B, C, N\], but modality 'sequence' "
        r"gives sequence input \[B, C, T\]",
    ):
        create_encoder("pointnet", "sequence", {"channels": 3})
    with pytest.raises(XmodalError, match="backbone 'temporal_conv' takes sequence input"):
        create_encoder("temporal_conv", "points")
    with pytest.raises(XmodalError, match="backbone 'temporal_conv' takes sequence input"):
        create_encoder("temporal_conv", "rgb")
    # built by hand, the modules' own layouts still refuse the pair
    with pytest.raises(XmodalError, match="PointNet takes points input.*'sequence' gives sequence"):
        Encoder("sequence", SequenceFrontend(channels=3), build_pointnet(3))
    with pytest.raises(XmodalError, match="TemporalConvNet takes sequence.*'points' gives points"):
        Encoder("points", PointsFrontend(), build_temporal_conv(3))


def test_layout_example_has_the_layout_shape():
    assert layout_example("image", 3).shape == (2, 3, 16, 16)
    assert layout_example("sequence", 6, batch=1).shape == (1, 6, 64)
    net = build_temporal_conv(6, width=4, depth=1)
    assert net.forward_features(layout_example("sequence", 6))[-1].shape == (2, 4, 64)
    with pytest.raises(ValueError, match="unknown layout 'seq'"):
        layout_example("seq", 1)


def test_an_image_backbone_gives_way_to_temporal_conv_for_sequences():
    """An image ``distill.encoder`` gives way to the front end's default backbone.

    ``distill.encoder`` (resnet8) serves the image students; a sequence student gets the front
    end's ``default_backbone`` with its defaults, as a point student gets pointnet. A backbone
    of another layout is never swapped: the load checks refuse it.
    """
    shared = EncoderConfig.of("resnet8", width_multiplier=2.0)
    assert encoder_for("sequence", shared) == EncoderConfig(name="temporal_conv")
    assert encoder_for("points", shared) == EncoderConfig(name="pointnet")
    assert encoder_for("depth", shared) is shared
    assert backbone_for("sequence", "pointnet") == "pointnet"
    assert backbone_for("points", "temporal_conv") == "temporal_conv"


def test_a_sequence_backbone_behind_an_image_front_end_is_refused_at_load(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "run",
        "scenes",
        "--out",
        str(out),
        "--set",
        "distill.encoders.depth.name=temporal_conv",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert (
        "distill.encoders.depth: backbone 'temporal_conv' takes sequence input [B, C, T], "
        "but modality 'depth' gives image input [B, C, H, W]" in err[0]
    )
    assert not out.exists()


# ----------------------------------------------------------------------------- paired


def _options(manifest: Path, **changes) -> PairedOptions:
    return PairedOptions(path=str(manifest), image_size=[16, 16], **changes)


def test_read_sequence_keeps_values_channels_first(tmp_path):
    values = np.random.default_rng(0).standard_normal((6, 40))
    np.save(tmp_path / "a.npy", values)
    got = read_sequence(tmp_path / "a.npy", _options(tmp_path / "m.csv"))
    assert got.dtype == np.float32 and np.array_equal(got, values.astype(np.float32))
    assert reader_for("sequence", tmp_path / "a.npy") is read_sequence
    assert reader_for("normals", tmp_path / "a.npy") is not read_sequence


@pytest.mark.parametrize(
    "array, message",
    [
        (
            np.zeros(40),
            r"shape \[40\]; a sequence .npy must be \[C, T\], channels first "
            r"\(one channel: save it as \[1, T\]\)",
        ),
        (np.zeros((2, 3, 4)), r"shape \[2, 3, 4\]; a sequence .npy must be \[C, T\]"),
        (np.zeros((3, 0)), r"shape \[3, 0\]: no time steps"),
        (np.array([[1.0, np.nan]]), "NaN or infinite values"),
        (np.zeros((2, 4), bool), "dtype bool; a sequence .npy holds numbers"),
    ],
)
def test_read_sequence_says_what_is_wrong(tmp_path, array, message):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(SampleError, match=message):
        read_sequence(tmp_path / "a.npy", _options(tmp_path / "m.csv"))


def test_read_sequence_takes_only_npy(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n")
    with pytest.raises(SampleError, match=r"'.csv' files cannot be read as a sequence"):
        read_sequence(tmp_path / "a.csv", _options(tmp_path / "m.csv"))


def test_sequence_statistics_of_the_train_split(tmp_path):
    rng = np.random.default_rng(1)
    train = (
        rng.standard_normal((7, 3, 11)) * [[2.0], [0.1], [0.0]] + [[9.8], [0.0], [5.0]]
    ).astype(np.float32)
    with h5py.File(tmp_path / "cache.h5", "w") as f:
        f["train/sequence"] = train
        f["val/sequence"] = train + 100  # never read
        f["train/rgb"] = np.zeros((7, 2, 2, 3), np.uint8)
    facts = sequence_frontend_kwargs(tmp_path / "cache.h5", ["rgb", "sequence"], chunk=3)
    assert list(facts) == ["sequence"] and facts["sequence"]["channels"] == 3
    wide = train.astype(np.float64)
    np.testing.assert_allclose(facts["sequence"]["mean"], wide.mean(axis=(0, 2)), rtol=1e-12)
    expected_std = wide.std(axis=(0, 2))
    np.testing.assert_allclose(facts["sequence"]["std"][:2], expected_std[:2], rtol=1e-12)
    assert facts["sequence"]["std"][2] == 1.0  # a constant channel is centred, not scaled
    again = sequence_frontend_kwargs(tmp_path / "cache.h5", ["sequence"], chunk=5)
    assert again == facts  # chunking changes no number


class _ImuFrontend(nn.Module):
    """A plugin's IMU front end: ``[B, T, 6]`` -> ``[B, 6, T]``, scaled by ``gain``."""

    out_channels, image_aligned, layout = 6, False, "sequence"

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain

    def example_input(self, batch: int = 2) -> torch.Tensor:
        return torch.randn(batch, 32, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2) * self.gain


class _Channels(_ImuFrontend):
    def __init__(self, channels: int = 6) -> None:
        super().__init__()


def test_a_plugin_sequence_column_is_read_as_sequences_and_given_only_its_options(
    tmp_path, monkeypatch
):
    for name, entry in (("imu", _ImuFrontend), ("emg", _Channels)):
        monkeypatch.setitem(FRONTENDS._entries, name, entry)  # registered for this test only
        monkeypatch.setitem(FRONTENDS._packages, name, "some-plugin")
        monkeypatch.setitem(FRONTENDS._descriptions, name, "a plugin")
    FRONTENDS.check_plugin("imu", _ImuFrontend)  # it keeps the front-end contract
    assert reader_for("imu", tmp_path / "a.npy") is read_sequence
    with h5py.File(tmp_path / "cache.h5", "w") as f:
        f["train/imu"] = f["train/emg"] = np.ones((3, 6, 10), np.float32)
    facts = sequence_frontend_kwargs(tmp_path / "cache.h5", ["imu", "emg"])
    assert facts == {"imu": {}, "emg": {"channels": 6}}  # never an option it does not take


CLASSES = ("slow", "mid", "fast")


def _paired_sequences(folder: Path, n: int, channels: int = 3, steps: int = 48) -> Path:
    """A manifest of ``n`` rows: an RGB PNG and a ``[C, T]`` ``.npy`` each.

    16x16 images of a class colour plus noise; sines at a class frequency (plus an offset of
    9.8 on channel 0, as gravity on an IMU).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["id,rgb,sequence,label"]
    t = np.arange(steps)
    for i in range(n):
        cls = i % 3
        image = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        image[..., cls] += 180
        write_png(torch.from_numpy(image).permute(2, 0, 1).contiguous(), str(folder / f"{i}.png"))
        phase = rng.uniform(0, 2 * np.pi, (channels, 1))
        wave = np.sin(2 * np.pi * (1 + 3 * cls) * t / steps + phase)
        wave[0] += 9.8
        np.save(folder / f"{i}.npy", wave + 0.1 * rng.standard_normal((channels, steps)))
        lines.append(f"s{i},{i}.png,{i}.npy,{CLASSES[cls]}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


TINY = [
    "teacher.modality=rgb",
    "distill.students=[sequence]",
    "data.paired.image_size=[16,16]",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
    "distill.methods=[none,wcord]",
    "distill.wcord.num_negatives=16",
    "probe.probes=[linear]",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def _argv(manifest: Path, out: Path, *extra: str) -> list[str]:
    argv = ["run", "paired", "--data", str(manifest), "--out", str(out)]
    for item in (*TINY, *extra):
        argv += ["--set", item]
    return argv


def test_xmodal_run_paired_with_a_sequence_student(tmp_path):
    manifest = _paired_sequences(tmp_path / "data", 36)
    out = tmp_path / "run"
    small = [
        "distill.encoders.sequence.name=temporal_conv",
        "distill.encoders.sequence.temporal_conv.width=16",
        "distill.encoders.sequence.temporal_conv.depth=3",
    ]
    assert main(_argv(manifest, out, *small)) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} >= {
        ("rgb", "teacher", "linear"),
        ("sequence", "none", "linear"),
        ("sequence", "wcord", "linear"),
    }
    assert all(np.isfinite(r["value"]) for r in rows)
    exports = [json.loads(p.read_text()) for p in out.rglob("encoder.json")]
    students = [e for e in exports if e["modality"] == "sequence"]
    assert students and all(e["backbone"] == "temporal_conv" for e in students)
    given = {"width": 16, "depth": 3}  # with the defaults of the rest, as config.yaml lists them
    filled = {**given, "kernel_size": 3, "norm": "batch", "dropout": 0.0}
    assert all(e["backbone_options"] == filled for e in students)
    front = students[0]["frontend_options"]
    assert front["channels"] == 3 and len(front["mean"]) == len(front["std"]) == 3
    assert abs(front["mean"][0] - 9.8) < 0.2 and abs(front["mean"][1]) < 0.2  # gravity offset


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["distill.encoders.sequence.name=pointnet"],
            "distill.encoders.sequence: backbone 'pointnet' takes points input [B, C, N], but "
            "modality 'sequence' gives sequence input [B, C, T]",
        ),
        (
            [
                "teacher.modality=sequence",
                "teacher.encoder.name=pointnet",
                "distill.students=[rgb]",
            ],
            "teacher.encoder: backbone 'pointnet' takes points input [B, C, N], but "
            "modality 'sequence' gives sequence input [B, C, T]",
        ),
        (
            ["distill.encoders.sequence={name: temporal_conv, temporal_conv: {kernel_size: 4}}"],
            "kernel_size=4 (must be an odd integer >= 3)",
        ),
        (["frontends.sequence.std=[0]"], "std=[0.0] (must be a list of numbers > 0)"),
    ],
)
def test_a_bad_sequence_encoder_is_refused_at_load(tmp_path, capsys, overrides, message):
    manifest = _paired_sequences(tmp_path / "data", 6)
    out = tmp_path / "run"
    assert main(_argv(manifest, out, *overrides)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()
