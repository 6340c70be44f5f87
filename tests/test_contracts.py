"""One contract per kind, run over every registered entry through ``xmodal.testing``.

Built-ins and any plugin installed in the test environment go through the code a plugin's own
tests and ``xmodal check`` run. Then: the checks catch what they promise to catch.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import xmodal
from xmodal.cli.main import main
from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES, DATASETS, FRONTENDS, METHODS, PROBES, REGISTRIES
from xmodal.data.arrays import ArrayDataset
from xmodal.data.source import LoadedDataset
from xmodal.objectives.objective import Objective
from xmodal.testing import (
    CHECKS,
    ContractError,
    check_component,
    components,
    parametrize_checks,
    resolve,
    run_checks,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@parametrize_checks()
def test_every_component_keeps_its_contract(kind, name, check):
    check_component(kind, name, check)


def test_import_xmodal_is_enough_for_every_registry_and_helper():
    assert set(xmodal.list_components("backbones")) == set(BACKBONES.names())
    encoder = xmodal.create_encoder("resnet8", "depth")
    assert encoder(FRONTENDS.get("depth")().example_input(2)).shape == (2, encoder.embed_dim)


# --- the checks fail where a component breaks its contract ------------------------------------

PACKAGE = "broken-demo"


@pytest.fixture
def register(monkeypatch):
    """Put an entry in a registry for one test, bypassing the load-time contract."""

    def add(kind: str, name: str, entry: Any) -> None:
        registry = REGISTRIES[kind]
        registry.names()  # built-ins first
        monkeypatch.setitem(registry._entries, name, entry)
        monkeypatch.setitem(registry._packages, name, PACKAGE)
        monkeypatch.setitem(registry._descriptions, name, "")

    return add


class CrashingNet(nn.Module):
    """Builds, then fails on its first forward pass."""

    layout = "sequence"

    def __init__(self, in_channels: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, width, 1)
        self.out_dim, self.stage_channels = width, [width]

    def forward_features(self, x):
        raise RuntimeError("shape mismatch in block 2")


class WrongMaps(CrashingNet):
    """Declares one stage but gives another channel count."""

    def forward_features(self, x):
        return [self.conv(x).repeat(1, 2, 1)]


def test_a_backbone_that_crashes_on_forward_fails_its_forward_check(register):
    register("backbones", "crashing", CrashingNet)
    with pytest.raises(ContractError) as raised:
        check_component("backbones", "crashing")
    message = str(raised.value)
    assert message.startswith(f"backbones 'crashing' from package '{PACKAGE}' fails 'forward': ")
    assert "RuntimeError: shape mismatch in block 2" in message
    assert "'encoder':" in message and "'contract':" not in message  # the build itself is fine
    assert "\n" not in message and isinstance(raised.value.__cause__, RuntimeError)
    status = {r.check: r.status for r in run_checks("backbones", "crashing")}
    assert status == {"options": "ok", "contract": "ok", "forward": "failed", "encoder": "failed"}


def test_a_backbone_whose_maps_break_stage_channels_is_named(register):
    register("backbones", "wrong-maps", WrongMaps)
    [forward] = run_checks("backbones", "wrong-maps", "forward")
    assert forward.status == "failed"
    assert "gives maps [[2, 8, 64]]; stage_channels says [4]" in forward.reason


@dataclasses.dataclass
class NoDefault:
    width: int


def test_options_without_a_default_fail_the_options_check(register):
    class NeedsWidth(CrashingNet):
        options = NoDefault

    register("backbones", "needs-width", NeedsWidth)
    [options] = run_checks("backbones", "needs-width", ["options"])
    assert options.status == "failed" and "option 'width' has no default" in options.reason


class NaNFrontend(nn.Module):
    """Gives NaN where its input has a hole."""

    out_channels, image_aligned, layout = 2, False, "sequence"

    def example_input(self, batch: int = 2) -> torch.Tensor:
        return torch.zeros(batch, 2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x  # 0 / 0


def test_a_front_end_giving_nan_fails_forward(register):
    register("frontends", "nan-maker", NaNFrontend)
    [forward] = run_checks("frontends", "nan-maker", "forward")
    assert (forward.status, forward.reason) == (
        "failed",
        "forward gives NaN or inf on example_input(3)",
    )


class _Method(Objective):
    needs: ClassVar[frozenset[str]] = frozenset({"teacher"})

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    @classmethod
    def build(cls, context, options):
        return cls()


class NaNLoss(_Method):
    def forward(self, student, teacher, labels, indices):
        return {"loss": (student.sum() * self.w).squeeze() * float("nan")}


class DetachedLoss(_Method):
    def forward(self, student, teacher, labels, indices):
        return {"loss": (student.detach().sum() * self.w).squeeze()}


class Fine(_Method):
    def forward(self, student, teacher, labels, indices):
        return {"loss": (student.square().mean() * self.w).squeeze()}


@pytest.mark.parametrize(
    "method, reason",
    [
        (NaNLoss, "the loss is nan"),
        (DetachedLoss, "no gradient reaches the student's features"),
    ],
)
def test_a_method_with_a_bad_loss_fails_its_train_step(register, method, reason):
    register("methods", "bad", method)
    results = {r.check: r for r in run_checks("methods", "bad")}
    assert results["train step"].status == "failed" and results["train step"].reason == reason
    assert results["options"].ok and results["protocol"].ok


def test_a_good_method_passes_and_an_untrained_one_skips_training(register):
    register("methods", "fine", Fine)
    assert [r.status for r in check_component("methods", "fine")] == ["ok"] * 5
    statuses = {r.check: r.status for r in check_component("methods", "none")}
    assert statuses["train step"] == statuses["seed"] == "skipped"


class RaisingProbe:
    metrics = ("accuracy",)

    def __init__(self, config=None) -> None:
        pass

    def evaluate(self, train, val, test, num_classes):
        raise ValueError("singular matrix")


class IntProbe(RaisingProbe):
    def evaluate(self, train, val, test, num_classes):
        return {"accuracy": 1}


@pytest.mark.parametrize(
    "probe, reason",
    [
        (RaisingProbe, "ValueError: singular matrix"),
        (IntProbe, "metric 'accuracy' is 1, not a finite float"),
    ],
)
def test_a_probe_that_raises_or_returns_no_float_fails_evaluate(register, probe, reason):
    register("probes", "bad-probe", probe)
    [evaluate] = run_checks("probes", "bad-probe", "evaluate")
    assert (evaluate.status, evaluate.reason) == ("failed", reason)


@dataclasses.dataclass
class TinyOptions:
    size: int = 4


class TinySet:
    """Writes one split too few."""

    name = "tiny"
    modalities = ("depth",)
    options = TinyOptions
    example_options: ClassVar[dict[str, Any]] = {"size": 3}

    def prepare(self, options, cache_path, progress=None):
        torch.save({"depth": torch.rand(options.size, 4, 4)}, cache_path)
        return cache_path

    def load(self, cache_path):
        split = ArrayDataset({**torch.load(cache_path), "label": torch.zeros(3).long()})
        return LoadedDataset(
            splits={"train": split, "test": split}, num_classes=1, class_names=["a"]
        )


class UnknownModality(TinySet):
    modalities = ("sonar",)


def test_a_dataset_is_prepared_and_loaded_with_its_example_options(register):
    register("datasets", "tiny", TinySet)
    register("datasets", "sonar-set", UnknownModality)
    [trip] = run_checks("datasets", "tiny", "prepare+load")
    assert trip.reason == "splits are ['test', 'train'], not train, val and test"
    [protocol] = run_checks("datasets", "sonar-set", "protocol")
    assert protocol.reason.startswith(
        "dataset 'sonar-set'.modalities ['sonar'] name no registered front end"
    )
    [skipped] = run_checks("datasets", "scenes", "prepare+load")  # no example_options
    assert skipped.status == "skipped" and "example_options" in skipped.reason


def test_a_check_leaves_the_callers_random_state_and_threads_alone():
    torch.manual_seed(5)
    threads = torch.get_num_threads()
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_component("backbones", "temporal_conv")
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


# --- what is checked, and how it is named -----------------------------------------------------


def test_components_of_xmodal_are_the_built_ins_in_every_kind():
    found = components("xmodal")
    assert ("frontends", "sequence") in found and ("backbones", "temporal_conv") in found
    assert {k for k, _ in found} == set(CHECKS)
    assert all(REGISTRIES[k].package(n) == "xmodal" for k, n in found)
    assert components("xmodal", kinds=["probe"]) == [("probes", n) for n in PROBES.names()]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("frontends:rgb", [("frontends", "rgb")]),
        ("backbone:temporal_conv", [("backbones", "temporal_conv")]),
        ("temporal_conv", [("backbones", "temporal_conv")]),
        ("wcord", [("methods", "wcord")]),
    ],
)
def test_a_target_names_components(target, expected):
    assert resolve(target) == expected


@pytest.mark.parametrize(
    "target, message",
    [
        ("scenes", "'scenes' names a component of several kinds; say which: datasets:scenes, "),
        ("temporal_cnv", "did you mean 'temporal_conv'?"),
        ("frontends:rgbb", "unknown modality 'rgbb': did you mean 'rgb'?"),
        ("widgets:rgb", "unknown kind 'widgets'"),
    ],
)
def test_a_bad_target_is_one_clear_error(target, message):
    with pytest.raises(XmodalError, match=None) as raised:
        resolve(target)
    assert message in str(raised.value)


def test_importing_xmodal_testing_needs_no_pytest():
    code = "import sys, xmodal.testing; assert 'pytest' not in sys.modules, 'pytest imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_xmodal_check_prints_a_row_per_check_and_exits_0(capsys):
    assert main(["check", "frontends:depth"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│ depth")]
    assert [row.split("│")[4].strip() for row in rows] == [c.name for c in CHECKS["frontends"]]
    assert all("│ ok " in row and "│ xmodal " in row for row in rows)
    assert "all 4 checks of 1 component passed" in out


def test_xmodal_check_exits_1_when_a_check_fails(register, capsys):
    register("backbones", "crashing", CrashingNet)
    assert main(["check", "crashing"]) == 1
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()]
    cells = {row[3]: row[:3] + row[4:5] for row in rows if row and row[0] == "crashing"}
    assert cells["forward"] == ["crashing", "backbones", PACKAGE, "failed"]
    assert cells["options"][3] == "ok" and cells["encoder"][3] == "failed"
    assert "2 of 4 checks failed (backbones:crashing)" in out


def test_xmodal_check_of_an_unknown_target_exits_2_with_one_line(capsys):
    assert main(["check", "no-such-thing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 'no-such-thing' is no installed package")


def test_registries_hold_the_kinds_checked():
    assert set(CHECKS) == set(REGISTRIES)
    assert {METHODS.kind, BACKBONES.kind, FRONTENDS.kind, DATASETS.kind, PROBES.kind} <= set(CHECKS)
    assert Path(xmodal.testing.__file__).parent.name == "testing"
