"""``xmodal run nyu-depth``'s default teacher: timm's ImageNet ResNet-50 from a local folder.

Without the folder the run stops at load (exit 2, one line naming it and the command that makes
it, nothing written); with a folder that command makes (a tiny random timm model standing in for
ResNet-50, saved offline in the same layout) the default run goes to the end.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from xmodal.cli.main import main
from xmodal.core.config import read_yaml
from xmodal.core.errors import ConfigError
from xmodal.pipelines import resolve_config

sys.path.insert(0, str(Path(__file__).parent))
from nyu_fixtures import write_nyu_labeled  # noqa: E402

timm = pytest.importorskip("timm")

from xmodal.encoders.timm_backbone import fetch_command  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = Path(__file__).parents[1] / "configs" / "nyu-depth.yaml"
#: the default teacher's options, as shipped
DEFAULT = read_yaml(CONFIG)["teacher"]["encoder"]
WEIGHTS = DEFAULT["timm"]["weights"]
TINY = "test_resnet"  # a few thousand parameters: stands in for resnet50 in the runs below
TINY_RUN = [
    "data.nyu_depth.image_size=[24,32]",
    "data.nyu_depth.normals=gradient",
    f"teacher.encoder.timm.model={TINY}",
    "distill.encoder.name=resnet8",
    "distill.methods=[wcord]",
    "distill.optim.epochs=1",
    "distill.optim.batch_size=4",
    "distill.wcord.num_negatives=8",
    "probe.linear.l2_grid=[0.01]",
    "probe.linear.max_iter=20",
    "probe.segmentation.epochs=1",
    "probe.segmentation.weight_decay_grid=[0.0]",
]


@pytest.fixture(scope="module")
def nyu_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    write_nyu_labeled(path, frames=24)  # official split: 15 train (2 held out), 9 test
    return path


def _argv(out: Path, data: Path, sets: list[str]) -> list[str]:
    argv = ["run", "nyu-depth", "--out", str(out), "--data", str(data)]
    for item in sets:
        argv += ["--set", item]
    return argv


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_the_default_teacher_is_timms_imagenet_resnet50_frozen():
    spec, config = resolve_config("nyu-depth", overrides=["teacher.encoder.timm.weights="])
    assert config.teacher.encoder.name == "timm"
    assert config.teacher.encoder.options().model == "resnet50.a1_in1k"
    assert config.teacher.optim.epochs == 0
    assert not Path(WEIGHTS).is_absolute()  # relative to the working directory


def test_missing_weights_stop_the_run_at_load_with_the_command_that_makes_them(
    nyu_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(_argv(out, nyu_file, [])) == 2
    line = _error_line(capsys)
    assert line.startswith(
        f"error: teacher.encoder.timm.weights: timm weights '{WEIGHTS}' do not exist"
    )
    assert fetch_command("resnet50.a1_in1k", WEIGHTS) in line
    assert "--set teacher.encoder.timm.weights=PATH" in line
    assert not out.exists() and not (tmp_path / "data").exists()  # before preprocessing


def test_the_command_in_the_error_makes_what_the_default_run_reads(
    nyu_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    # preprocessing alone builds no teacher, so it needs no weights
    assert (
        main(
            [
                "data",
                "prepare",
                "nyu-depth",
                "--data",
                str(nyu_file),
                "--out",
                str(out),
                "--set",
                "data.nyu_depth.image_size=[24,32]",
                "--set",
                "data.nyu_depth.normals=gradient",
            ]
        )
        == 0
    )
    # the command of the error line, offline: the tiny model, random weights, same layout
    python, flag, code = shlex.split(fetch_command(TINY, WEIGHTS))
    assert (python, flag) == ("python3", "-c") and "pretrained=True" in code
    exec(code.replace("pretrained=True", "pretrained=False"), {})
    assert {p.name for p in Path(WEIGHTS).iterdir()} == {"config.json", "model.safetensors"}
    assert main(_argv(out, nyu_file, TINY_RUN)) == 0
    rows = json.loads((out / "results.json").read_text())
    got = {(r["modality"], r["method"], r["probe"], r["metric"]) for r in rows}
    assert ("rgb", "teacher", "linear", "accuracy") in got
    assert ("hha", "wcord", "linear", "accuracy") in got
    assert ("hha", "wcord", "seg40", "mean_iou") in got
    teacher = json.loads(next((out / "teacher").rglob("encoder.json")).read_text())
    assert teacher["backbone"] == "timm" and teacher["backbone_options"]["model"] == TINY


def test_file_weights_get_a_command_that_writes_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = "w/tiny.safetensors"
    with pytest.raises(ConfigError, match="do not exist") as info:
        resolve_config("nyu-depth", overrides=[f"teacher.encoder.timm.weights={target}"])
    command = fetch_command("resnet50.a1_in1k", target)
    assert command in str(info.value)
    exec(
        shlex.split(fetch_command(TINY, target))[2].replace("pretrained=True", "pretrained=False"),
        {},
    )
    assert Path(target).is_file()
    resolve_config(
        "nyu-depth",
        overrides=[
            f"teacher.encoder.timm.weights={target}",
            f"teacher.encoder.timm.model={TINY}",
        ],
    )


def test_other_load_time_encoder_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a torchvision teacher's missing .pth, and a student's weights, are checked at load too
    with pytest.raises(
        ConfigError, match=r"^teacher.encoder.resnet18.pretrained: weights file 'r18.pth'"
    ):
        resolve_config(
            "nyu-depth",
            overrides=["teacher.encoder={name: resnet18, resnet18: {pretrained: r18.pth}}"],
        )
    with pytest.raises(ConfigError, match=r"^distill.encoder.timm.weights: timm weights 's.pth'"):
        resolve_config(
            "nyu-depth",
            overrides=[
                "teacher.encoder.timm.weights=",
                "distill.encoder={name: timm, timm: {weights: s.pth}}",
            ],
        )
    # a teacher given by teacher.checkpoint is never built from its options
    resolve_config("nyu-depth", overrides=[f"teacher.checkpoint={tmp_path}"], stages=["teacher"])
    # timm not installed: the extra to install, at load
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ConfigError, match=r"^teacher.encoder.name: .*pip install 'xmodal\[timm\]'"):
        resolve_config("nyu-depth")
