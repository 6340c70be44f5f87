"""Config loading: types, unknown keys with suggestions, overrides, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from xmodal.core.config import apply_overrides, from_dict, load_config, parse_override, to_dict
from xmodal.core.errors import ConfigError


@dataclass
class Inner:
    lr: float = 0.1
    epochs: int = 3
    kind: Literal["adamw", "sgd"] = "adamw"


@dataclass
class Outer:
    name: str = "x"
    seeds: list[int] = field(default_factory=lambda: [0])
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None
    flag: bool = False


def test_defaults_and_nested_values():
    cfg = from_dict(Outer, {"inner": {"lr": 1, "epochs": 5}, "seeds": [1, 2]})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.epochs == 5 and cfg.seeds == [1, 2] and cfg.name == "x"


def test_unknown_key_has_full_path_and_suggestion():
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, {"inner": {"epoch": 5}})
    assert "'inner.epoch'" in str(info.value) and "did you mean 'inner.epochs'" in str(info.value)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"inner": {"epochs": "five"}}, "'inner.epochs': expected an integer"),
        ({"inner": {"epochs": 2.5}}, "'inner.epochs': expected an integer"),
        ({"inner": {"lr": "fast"}}, "'inner.lr': expected a number"),
        ({"flag": "yes"}, "'flag': expected true or false"),
        ({"seeds": [1, "a"]}, "'seeds[1]': expected an integer"),
        ({"inner": {"kind": "adam"}}, "did you mean 'adamw'"),
        ({"inner": 3}, "inner: expected a mapping"),
        ({"maybe": "x"}, "'maybe': expected int or NoneType"),
    ],
)
def test_type_errors_name_the_key(data, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        from_dict(Outer, data)
    assert fragment in str(info.value)


def test_float_accepts_yaml_exponent_strings():
    assert from_dict(Outer, {"inner": {"lr": "1e-3"}}).inner.lr == pytest.approx(1e-3)


def test_overrides_parse_yaml_values_and_check_keys():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    data = apply_overrides({}, ["inner.epochs=7", "seeds=[3,4]", "maybe=null"], Outer)
    cfg = from_dict(Outer, data)
    assert cfg.inner.epochs == 7 and cfg.seeds == [3, 4] and cfg.maybe is None
    with pytest.raises(
        ConfigError, match="unknown config key 'inner.lrr'.*did you mean 'inner.lr'"
    ):
        apply_overrides({}, ["inner.lrr=1"], Outer)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["inner.lr"], Outer)
    with pytest.raises(ConfigError, match="'name' is not a section"):
        apply_overrides({}, ["name.x=1"], Outer)


def test_overrides_reach_into_backbone_options():
    from xmodal.pipelines.config import RunConfig

    data = apply_overrides(
        {},
        [
            "teacher.encoder.name=resnet18",
            "teacher.encoder.resnet18.pretrained=/tmp/w.pth",
            "teacher.encoder.resnet18.small_input=true",
            "distill.encoders.points.name=pointnet",
            "distill.encoders.points.pointnet.width=2",
        ],
        RunConfig,
    )
    cfg = from_dict(RunConfig, data)
    assert to_dict(cfg.teacher.encoder.options()) == {
        "pretrained": "/tmp/w.pth",
        "small_input": True,
    }
    assert cfg.distill.encoders["points"].options().width == 2.0
    with pytest.raises(ConfigError, match=r"unknown config key 'distill.encoders.points.nmae'"):
        apply_overrides({}, ["distill.encoders.points.nmae=pointnet"], RunConfig)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "teacher.encoder.resnet8.pretrained=imagenet",  # resnet8 takes no pretrained weights
            "--set 'teacher.encoder.resnet8.pretrained=imagenet': unknown config key "
            "'teacher.encoder.resnet8.pretrained'",
        ),
        (
            "teacher.encoder.resnet8.norm=grup",
            "config key 'teacher.encoder.resnet8.norm': 'grup' is not one of 'batch', 'group'; "
            "did you mean 'group'?",
        ),
        (
            "teacher.encoder.resnet8.width_multiplier=wide",
            "config key 'teacher.encoder.resnet8.width_multiplier': expected a number",
        ),
    ],
)
def test_backbone_options_are_typed_like_any_other(override, message):
    from xmodal.pipelines.config import RunConfig

    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, overrides=[override])
    assert message in str(info.value)


def test_lone_scalar_becomes_one_item_list():
    assert from_dict(Outer, apply_overrides({}, ["seeds=5"], Outer)).seeds == [5]


def test_load_config_layers_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "file", "inner": {"epochs": 9}}))
    cfg = load_config(Outer, path, ["inner.epochs=11"], base={"name": "base", "flag": True})
    assert (cfg.name, cfg.flag, cfg.inner.epochs) == ("file", True, 11)
    assert from_dict(Outer, to_dict(cfg)) == cfg  # round trip


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(Outer, listy)


def test_run_config_validates_post_init_and_is_complete():
    from xmodal.pipelines.config import RunConfig

    with pytest.raises(ConfigError, match="distinct"):
        from_dict(RunConfig, {"seeds": [1, 1]})
    with pytest.raises(ConfigError, match="distill.optim"):
        from_dict(RunConfig, {"distill": {"optim": {"batch_size": 0}}})
    cfg = from_dict(RunConfig, {})
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
