"""Channels-last convolution weights: a faster layout that changes no value and leaves no trace."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from xmodal.core.config import load_config
from xmodal.data.arrays import ArrayDataset
from xmodal.data.source import LoadedDataset
from xmodal.encoders import create_encoder
from xmodal.encoders.memory_format import channels_last
from xmodal.pipelines.config import RunConfig
from xmodal.training.optim import OptimConfig
from xmodal.training.train import TeacherOutputs, TrainJob, TrainSetup, train_encoder

pytestmark = pytest.mark.usefixtures("single_thread")

CL = torch.channels_last


def _convs(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.dim() == 4]


def test_inside_channels_last_after_contiguous_values_bitwise_kept():
    encoder = create_encoder("resnet8", "depth")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with channels_last(encoder) as inside:
        assert inside is encoder
        convs = _convs(encoder)
        assert all(p.is_contiguous(memory_format=CL) for p in convs)
        assert any(not p.is_contiguous() for p in convs)  # a 1-channel stem is both layouts
    assert all(p.is_contiguous() for p in encoder.parameters())
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_same_features_up_to_rounding():
    torch.manual_seed(0)
    encoder = create_encoder("resnet8", "depth").eval()
    x = torch.rand(16, 8, 8) + 0.5
    with torch.no_grad():
        plain = encoder(x)
        with channels_last(encoder):
            fast = encoder(x)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def test_restored_when_the_block_raises():
    encoder = create_encoder("resnet8", "depth")
    with pytest.raises(RuntimeError, match="boom"), channels_last(encoder):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in encoder.parameters())


@pytest.mark.parametrize("enabled", [True, False])
def test_modules_without_2d_convolutions_and_disabled_are_left_alone(enabled):
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Conv1d(3, 3, 1))
    encoder = create_encoder("resnet8", "depth")
    for module, touched in ((mlp, False), (encoder, enabled)):
        ids = [p.data_ptr() for p in module.parameters()]
        with channels_last(module, enabled):
            inside = [p.data_ptr() for p in module.parameters()]
        assert (inside != ids) == touched


def test_trained_encoder_comes_back_contiguous_and_close_to_the_plain_layout():
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(
        {"depth": torch.rand(32, 8, 8, generator=g) + 0.5, "label": torch.arange(32) % 3}
    )
    dataset = LoadedDataset(splits={"train": data}, num_classes=3, class_names=["a", "b", "c"])
    weights = {}
    for layout in (True, False):
        torch.manual_seed(0)
        encoder = create_encoder("resnet8", "depth")
        train_encoder(
            encoder,
            TrainJob(
                "fitnet",
                None,
                dataset,
                seed=0,
                teacher=TeacherOutputs(features=torch.randn(32, 6, generator=g.manual_seed(1))),
            ),
            TrainSetup(
                OptimConfig(epochs=1, batch_size=8), Accelerator(cpu=True), channels_last=layout
            ),
        )
        assert all(p.is_contiguous() for p in encoder.parameters())
        weights[layout] = encoder.state_dict()
    for key, value in weights[True].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, weights[False][key], atol=1e-3, rtol=1e-3)


def test_runtime_option_is_off_by_default_and_can_be_turned_on(tmp_path):
    assert RunConfig().runtime.channels_last is False  # less exact on CPU: an opt-in
    path = tmp_path / "run.yaml"
    path.write_text("runtime: {channels_last: true}\n")
    assert load_config(RunConfig, path).runtime.channels_last is True


def test_turning_it_on_recomputes_what_it_computes_and_keeps_the_data(tmp_path):
    from test_pipeline_scenes import _argv

    from xmodal.cli.main import main

    extra = ("distill.students=[depth]", "distill.methods=[none,fitnet]")
    assert main(_argv(tmp_path, *extra)) == 0
    files = {
        "data": tmp_path / "data" / "scenes" / "data.h5",
        "teacher": tmp_path / "teacher" / "seed0" / "encoder.pt",
        "student": tmp_path / "distill" / "seed0" / "depth" / "fitnet" / "encoder.pt",
    }
    stamps = {k: p.stat().st_mtime_ns for k, p in files.items()}
    assert main(_argv(tmp_path, *extra)) == 0  # the default layout: all reused
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == stamps
    assert main(_argv(tmp_path, *extra, "runtime.channels_last=true")) == 0
    changed = {k for k, p in files.items() if p.stat().st_mtime_ns != stamps[k]}
    assert changed == {"teacher", "student"}  # trained with it; the data is not
    features = {p.name for p in (tmp_path / "features").iterdir()}
    stamps = {k: p.stat().st_mtime_ns for k, p in files.items()}
    assert main(_argv(tmp_path, *extra, "runtime.channels_last=true")) == 0  # now reused
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == stamps
    assert {p.name for p in (tmp_path / "features").iterdir()} == features
