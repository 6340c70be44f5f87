"""Front-end and backbone options are checked at load like a method's (issue 21).

Types come from the signature, ranges from an ``options`` dataclass's ``require`` rules; a bad
value is one line naming the key's full path, with exit 2, before any stage writes anything.
Built-ins run in this process; a plugin package runs in a fresh one, as a user's would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from ident_plugin import install
from plugin_package import main_in_one_process

from xmodal.cli.main import main
from xmodal.core.config import dump_yaml, load_config, to_dict
from xmodal.core.errors import XmodalError
from xmodal.core.registry import Registry

TINY = ["data.scenes.num_train=48", "data.scenes.num_val=24", "data.scenes.num_test=24"]


def _run(out: Path, *sets: str, config: Path | None = None) -> list[str]:
    argv = ["run", "scenes", "--out", str(out), *(["--config", str(config)] if config else [])]
    for item in (*TINY, *sets):
        argv += ["--set", item]
    return argv


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["frontends.depth.max_m=-1"],
            "config key 'frontends.depth.max_m': invalid max_m=-1.0 (must be a finite number > 0)",
        ),
        (
            ["frontends.audio.n_mels=0"],
            "config key 'frontends.audio.n_mels': invalid n_mels=0 (must be an integer >= 1)",
        ),
        (
            ["frontends.depth.max_m=far"],
            "config key 'frontends.depth.max_m': expected a number, got 'far'",
        ),
        (
            ["frontends.audio.sample_rate=8000.5"],
            "config key 'frontends.audio.sample_rate': expected an integer, got 8000.5",
        ),
        (
            ["distill.encoder.resnet8.width_multiplier=0"],
            "config key 'distill.encoder.resnet8.width_multiplier': invalid "
            "width_multiplier=0.0 (must be a finite number > 0)",
        ),
        (
            ["teacher.encoder.resnet8.norm=layer"],
            "config key 'teacher.encoder.resnet8.norm': 'layer' is not one of 'batch', 'group'",
        ),
        (
            [
                "distill.students=[points]",
                "distill.encoders.points.name=pointnet",
                "distill.encoders.points.pointnet.width=0",
            ],
            "config key 'distill.encoders.points.pointnet.width': invalid "
            "width=0.0 (must be a finite number > 0)",
        ),
        (
            ["distill.students=[points]", "frontends.points.features=-2"],
            "config key 'frontends.points.features': invalid features=-2 (must be an integer >= 0)",
        ),
    ],
)
def test_a_bad_built_in_option_is_one_line_at_load(tmp_path, capsys, sets, message):
    out = tmp_path / "run"
    assert main(_run(out, *sets)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
    assert not out.exists()  # before preprocess wrote anything


def test_a_bad_option_from_a_yaml_file_names_its_full_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "distill": {
                    "students": ["points"],
                    "encoders": {"points": {"name": "pointnet", "pointnet": {"neighbours": -1}}},
                }
            }
        )
    )
    out = tmp_path / "run"
    assert main(_run(out, config=config)) == 2
    assert capsys.readouterr().err.strip() == (
        "error: config key 'distill.encoders.points.pointnet.neighbours': "
        "invalid neighbours=-1 (must be an integer >= 0)"
    )
    assert not out.exists()


def test_the_resolved_config_lists_every_backbone_default():
    from xmodal.pipelines.config import RunConfig

    config = load_config(
        RunConfig,
        overrides=[
            "distill.students=[depth,points]",
            "distill.encoder.resnet8.norm=group",
            "teacher.encoder.name=pointnet",
            "teacher.modality=points",
        ],
    )
    config.fill_defaults()
    resolved = to_dict(config)
    assert resolved["distill"]["encoder"] == {
        "name": "resnet8",
        "resnet8": {"width_multiplier": 1.0, "norm": "group"},
    }
    # points swaps the shared image backbone for its own default: listed, filled
    assert resolved["distill"]["encoders"]["points"] == {
        "name": "pointnet",
        "pointnet": {"width": 1.0, "layers": 1, "norm": "batch", "neighbours": 16},
    }
    assert "depth" not in config.distill.encoders  # it uses distill.encoder
    assert resolved["teacher"]["encoder"]["pointnet"]["neighbours"] == 16
    assert "kwargs" not in dump_yaml(config)  # the resolved config.yaml: one shape
    assert config.frontends.options_for("points").features == 0
    filled = dataclasses.replace(config)
    filled.fill_defaults()  # idempotent: a rerun from config.yaml keys its units alike
    assert filled.distill.encoders["points"] == config.distill.encoders["points"]


def test_declared_options_must_be_arguments_the_factory_takes():
    @dataclasses.dataclass
    class Options:
        width: int = 1
        colour: str = "red"  # the factory takes no colour

    def build(in_channels: int, width: int = 1) -> None:
        """Builds nothing."""

    build.options = Options  # type: ignore[attr-defined]
    registry: Registry[object] = Registry("backbones", signature_options=("in_channels",))
    with pytest.raises(XmodalError) as info:
        registry.add("skewed", build, package="demo")
    assert "breaks the backbone contract: 'skewed'.options has field(s) colour" in str(info.value)


# --- a plugin package, in a fresh process ---------------------------------------------------


#: each plugin case: its ``--set``s and the one line it must give
PLUGIN_CASES = [
    (
        ["frontends.glow.gain=bright"],
        "config key 'frontends.glow.gain': expected a number, got 'bright'",
    ),
    (
        ["frontends.glow.curve=cubic"],
        "config key 'frontends.glow.curve': 'cubic' is not one of 'linear', 'log'",
    ),
    (
        ["distill.encoder.name=tinyconv", "distill.encoder.tinyconv.width=0"],
        "config key 'distill.encoder.tinyconv.width': invalid width=0 (must be an integer >= 1)",
    ),
    (
        ["distill.encoders.depth={name: tinyconv, tinyconv: {width: 2.5}}"],
        "config key 'distill.encoders.depth.tinyconv.width': expected an integer, got 2.5",
    ),
    (
        ["probe.probes=[nearest]", "probe.nearest.k=0"],
        "config key 'probe.nearest.k': invalid k=0 (must be an integer >= 1)",
    ),
]


def test_a_bad_plugin_option_is_one_line_at_load(tmp_path):
    site = install(tmp_path / "site")
    outs = [tmp_path / f"run{i}" for i in range(len(PLUGIN_CASES))]
    argvs = [_run(out, *sets) for out, (sets, _) in zip(outs, PLUGIN_CASES, strict=True)]
    answers = main_in_one_process(site, argvs)
    for (sets, message), out, (code, err) in zip(PLUGIN_CASES, outs, answers, strict=True):
        assert code == 2, (sets, err)
        assert err.strip().splitlines() == [f"error: {message}"], (sets, err)
        assert not out.exists()
