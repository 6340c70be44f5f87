"""One shape and one word for component options (issue 22).

A backbone's options sit under its name, as a method's or a dataset's do
(``{name: pointnet, pointnet: {width: 2}}``); the former ``kwargs`` key, the former ``*Config``
class names and encoder files that say ``kwargs`` still work for one release, each former
spelling with one ``DeprecatedSpelling`` warning.
"""

from __future__ import annotations

import importlib
import json
import warnings

import pytest
import torch
import yaml

from xmodal.core import config as config_module
from xmodal.core.config import dump_yaml, load_config, to_dict
from xmodal.core.errors import ConfigError, DeprecatedSpelling
from xmodal.encoders import create_encoder
from xmodal.encoders.export import (
    FORMAT,
    VERSION,
    export_encoder,
    load_encoder,
    read_export_metadata,
    save_encoder,
)
from xmodal.pipelines.config import EncoderConfig, RunConfig
from xmodal.pipelines.stages.common import build_encoder
from xmodal.pipelines.stages.text_teacher import encoder_description

pytestmark = pytest.mark.usefixtures("single_thread")

NEW = """
teacher:
  encoder: {name: resnet8, resnet8: {norm: group}}
distill:
  students: [depth, points]
  encoders:
    points: {name: pointnet, pointnet: {width: 2, neighbours: 4}}
"""
OLD = NEW.replace("resnet8: {norm", "kwargs: {norm").replace("pointnet: {width", "kwargs: {width")


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees the former keys' warnings anew (they warn once per process)."""
    monkeypatch.setattr(config_module, "_WARNED_KEYS", set())


def _load(tmp_path, text: str, overrides=(), name: str = "run.yaml") -> tuple[RunConfig, list]:
    """The config of YAML ``text`` with ``overrides``, and the DeprecatedSpelling messages."""
    path = tmp_path / name
    path.write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(RunConfig, path, overrides=list(overrides))
    return config, [str(w.message) for w in caught if issubclass(w.category, DeprecatedSpelling)]


# --- the new shape ---------------------------------------------------------------------------


def test_backbone_options_sit_under_the_backbone_name(tmp_path):
    config, former = _load(tmp_path, NEW)
    assert former == []
    points = config.distill.encoders["points"]
    assert (points.name, points.options().width, points.options().neighbours) == ("pointnet", 2, 4)
    assert config.teacher.encoder.options().norm == "group"
    assert to_dict(config)["distill"]["encoders"]["points"] == {
        "name": "pointnet",
        "pointnet": {"width": 2.0, "layers": 1, "norm": "batch", "neighbours": 4},
    }
    assert EncoderConfig.of("pointnet", width=2, neighbours=4) == points


@pytest.mark.parametrize(
    "text, message",
    [
        (
            NEW.replace("width: 2", "width: 0"),
            "config key 'distill.encoders.points.pointnet.width': invalid width=0.0 "
            "(must be a finite number > 0)",
        ),
        (
            NEW.replace("norm: group", "norm: layer"),
            "config key 'teacher.encoder.resnet8.norm': 'layer' is not one of 'batch', 'group'",
        ),
        (
            NEW.replace("neighbours: 4", "neighbors: 4"),
            "unknown config key 'distill.encoders.points.pointnet.neighbors'; did you mean "
            "'distill.encoders.points.pointnet.neighbours'?",
        ),
    ],
)
def test_a_bad_backbone_option_is_one_line_with_its_full_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(message)


def test_the_resolved_config_lists_backbone_defaults_under_the_new_shape(tmp_path):
    config, _ = _load(tmp_path, NEW)
    config.fill_defaults()
    text = dump_yaml(config)
    resolved = yaml.safe_load(text)
    assert resolved["teacher"]["encoder"] == {
        "name": "resnet8",
        "resnet8": {"width_multiplier": 1.0, "norm": "group"},
    }
    assert resolved["distill"]["encoder"] == {
        "name": "resnet8",
        "resnet8": {"width_multiplier": 1.0, "norm": "batch"},
    }
    assert resolved["distill"]["encoders"]["points"]["pointnet"]["layers"] == 1
    assert "kwargs" not in text
    again, former = _load(tmp_path, text, name="config.yaml")  # a rerun from config.yaml
    assert former == [] and to_dict(again) == to_dict(config)


# --- the former spelling, one release ----------------------------------------------------------


def test_the_former_kwargs_key_loads_with_one_warning_each_and_builds_the_same_backbone(tmp_path):
    new, _ = _load(tmp_path, NEW)
    old, former = _load(tmp_path, OLD, name="old.yaml")
    assert former == [
        "config key 'teacher.encoder.kwargs' is deprecated: write 'teacher.encoder.resnet8' (a "
        "component's options sit under its name); 'teacher.encoder.kwargs' is read as "
        "'teacher.encoder.resnet8' for one more release",
        "config key 'distill.encoders.points.kwargs' is deprecated: write "
        "'distill.encoders.points.pointnet' (a component's options sit under its name); "
        "'distill.encoders.points.kwargs' is read as 'distill.encoders.points.pointnet' for one "
        "more release",
    ]
    assert to_dict(old) == to_dict(new)
    for modality, encoder in (("rgb", "teacher"), ("points", "points")):
        built = []
        for config in (new, old):
            cfg = (
                config.teacher.encoder if encoder == "teacher" else config.distill.encoders[encoder]
            )
            torch.manual_seed(0)
            built.append(build_encoder(cfg, modality, {}).state_dict())
        assert built[0].keys() == built[1].keys()
        assert all(torch.equal(built[0][k], built[1][k]) for k in built[0])
    _, again = _load(tmp_path, OLD, name="old.yaml")  # once per key in a process
    assert again == []


def test_former_set_keys_warn_once_per_key_and_land_under_the_selected_backbone(tmp_path):
    sets = [
        "teacher.encoder.kwargs.norm=group",
        "teacher.encoder.kwargs.width_multiplier=0.5",
        "distill.encoders.points.kwargs.width=3",
        "distill.encoders.points.name=pointnet",  # named after its options: still pointnet's
    ]
    config, former = _load(tmp_path, "distill: {students: [points]}\n", sets)
    assert [m.split(" is deprecated")[0] for m in former] == [
        "config key 'teacher.encoder.kwargs'",
        "config key 'distill.encoders.points.kwargs'",
    ]
    assert to_dict(config.teacher.encoder.options()) == {"width_multiplier": 0.5, "norm": "group"}
    assert config.distill.encoders["points"].options().width == 3.0


def test_either_spelling_overrides_either_key_by_key(tmp_path):
    new, former = _load(tmp_path, NEW, ["distill.encoders.points.kwargs.width=5"])
    assert len(former) == 1
    points = new.distill.encoders["points"].options()
    assert (points.width, points.neighbours) == (5.0, 4)  # the YAML's other option kept
    old, _ = _load(tmp_path, OLD, ["distill.encoders.points.pointnet.width=6"], name="old.yaml")
    points = old.distill.encoders["points"].options()
    assert (points.width, points.neighbours) == (6.0, 4)


def test_both_spellings_in_one_mapping_are_an_error_naming_both(tmp_path):
    text = NEW.replace("resnet8: {norm: group}", "resnet8: {norm: group}, kwargs: {norm: batch}")
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert str(info.value) == (
        "config keys 'teacher.encoder.kwargs' and 'teacher.encoder.resnet8' both give the "
        "options of backbone 'resnet8'; keep 'teacher.encoder.resnet8' and delete "
        "'teacher.encoder.kwargs' (its former spelling)"
    )
    with pytest.raises(ConfigError, match="'distill.encoders.points.kwargs' and"):
        _load(tmp_path, NEW, ["distill.encoders.points={name: pointnet, pointnet: {}, kwargs: {}}"])


@pytest.mark.parametrize(
    "module, former, new",
    [
        ("xmodal.objectives.wcord", "WCoRDConfig", "WCoRDOptions"),
        ("xmodal.objectives", "WCoRDConfig", "WCoRDOptions"),
        ("xmodal.objectives.baselines", "CRDConfig", "CRDOptions"),
        ("xmodal.objectives.baselines.crd", "CRDConfig", "CRDOptions"),
        ("xmodal.objectives.baselines.fitnet", "FitNetConfig", "FitNetOptions"),
        ("xmodal.objectives.baselines.infonce", "InfoNCEConfig", "InfoNCEOptions"),
        ("xmodal.objectives.baselines.kd", "KDConfig", "KDOptions"),
        ("xmodal.objectives.baselines.pkt", "PKTConfig", "PKTOptions"),
        ("xmodal.objectives.baselines.rkd", "RKDConfig", "RKDOptions"),
        ("xmodal.evaluation", "LinearProbeConfig", "LinearProbeOptions"),
        ("xmodal.evaluation.linear_probe", "LinearProbeConfig", "LinearProbeOptions"),
        ("xmodal.evaluation.knn_probe", "KNNProbeConfig", "KNNProbeOptions"),
        ("xmodal.evaluation.retrieval_probe", "RetrievalProbeConfig", "RetrievalProbeOptions"),
        (
            "xmodal.evaluation.segmentation_probe",
            "SegmentationProbeConfig",
            "SegmentationProbeOptions",
        ),
        ("xmodal.evaluation.zero_shot_probe", "ZeroShotProbeConfig", "ZeroShotProbeOptions"),
        ("xmodal.data.scenes", "ScenesConfig", "ScenesOptions"),
        ("xmodal.data.scenes.generate", "ScenesConfig", "ScenesOptions"),
        ("xmodal.data.nyu.config", "NYUDepthConfig", "NYUDepthOptions"),
        ("xmodal.data.paired", "PairedConfig", "PairedOptions"),
        ("xmodal.data.paired.config", "PairedConfig", "PairedOptions"),
        ("xmodal.data.cifar100_source", "CIFAR100Config", "CIFAR100Options"),
    ],
)
def test_former_options_class_names_import_with_a_warning(module, former, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecatedSpelling, match=f"{module}.{former} is deprecated: use "):
        assert getattr(mod, former) is getattr(mod, new)
    assert former not in mod.__all__ if hasattr(mod, "__all__") else True
    with pytest.raises(AttributeError, match="no attribute 'NoSuchOptions'"):
        mod.NoSuchOptions  # noqa: B018  (the lookup is the test)


def test_objectives_keep_their_options_as_options():
    from xmodal.objectives.baselines import CRDObjective, CRDOptions
    from xmodal.objectives.wcord import WCoRDLoss, WCoRDOptions

    options = WCoRDOptions(embed_dim=4, num_negatives=4)
    wcord = WCoRDLoss(5, 6, 20, options)
    assert wcord.options is options and WCoRDLoss.options is WCoRDOptions
    assert not hasattr(wcord, "config")
    crd = CRDObjective(5, 6, 20, options=CRDOptions(embed_dim=4, num_negatives=4))
    assert CRDObjective.options is CRDOptions and isinstance(crd.options, CRDOptions)


def test_create_encoder_reads_the_former_frontend_keyword():
    torch.manual_seed(0)
    new = create_encoder("resnet8", "depth", frontend_options={"max_m": 5.0})
    torch.manual_seed(0)
    with pytest.warns(DeprecatedSpelling, match="write frontend_options="):
        old = create_encoder("resnet8", "depth", frontend_kwargs={"max_m": 5.0})
    assert old.frontend.max_m == new.frontend.max_m == 5.0
    state = new.state_dict()
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items())


# --- encoder files -----------------------------------------------------------------------------


def _former_record(record: dict, renames: dict[str, str]) -> dict:
    """``record`` as format version 1 wrote it: its options keys named ``*kwargs``."""
    return {renames.get(k, k): v for k, v in {**record, "version": 1}.items()}


def test_encoder_files_name_options_and_those_that_say_kwargs_still_load(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("resnet8", "depth", {"max_m": 8.0}, width_multiplier=0.5).eval()
    backbone, frontend = {"width_multiplier": 0.5, "norm": "batch"}, {"max_m": 8.0}
    x = torch.rand(2, 16, 16) * 5
    with torch.no_grad():
        want = encoder(x)
    export = tmp_path / "export"
    export_encoder(encoder, export, "resnet8", backbone, frontend)
    meta = json.loads((export / "encoder.json").read_text())
    assert (meta["version"], meta["backbone_options"], meta["frontend_options"]) == (
        VERSION,
        backbone,
        frontend,
    )
    assert "backbone_kwargs" not in meta and "frontend_kwargs" not in meta
    checkpoint = save_encoder(encoder, tmp_path / "encoder.pt", "resnet8", backbone, frontend)
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["version"], saved["options"], saved["frontend_options"]) == (
        VERSION,
        backbone,
        frontend,
    )

    # the same files as format version 1 wrote them
    (export / "encoder.json").write_text(
        json.dumps(
            _former_record(
                meta,
                {"backbone_options": "backbone_kwargs", "frontend_options": "frontend_kwargs"},
            )
        )
    )
    old_checkpoint = tmp_path / "old.pt"
    torch.save(
        _former_record(saved, {"options": "kwargs", "frontend_options": "frontend_kwargs"}),
        old_checkpoint,
    )
    assert set(torch.load(old_checkpoint, weights_only=True)) == {
        "format",
        "version",
        "name",
        "modality",
        "kwargs",
        "frontend_kwargs",
        "extra",
        "state_dict",
    }
    assert saved["format"] == FORMAT
    read = read_export_metadata(export)
    assert (read["version"], read["backbone_options"], read["frontend_options"]) == (
        1,
        backbone,
        frontend,
    )
    for path in (export, old_checkpoint):
        loaded = load_encoder(path)
        with torch.no_grad():
            assert torch.equal(loaded(x), want)
        assert loaded.frontend.max_m == 8.0
        assert encoder_description(path) == ("resnet8", backbone, "depth")
