"""Every kind has a load-time contract, datasets and probes included, declared in one place.

A plugin dataset or probe that breaks it is refused when it is registered in code
(``DATASETS.add``) and when it loads through an entry point, with one line naming the plugin,
its package and what to fix. Every built-in passes. ``xmodal.testing``'s protocol checks run
the same contract, then their deeper checks.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Any, ClassVar

import pytest
from plugin_package import run_xmodal, write_dist

from xmodal.core.errors import XmodalError
from xmodal.core.registry import DATASETS, OWN_PACKAGE, PROBES, REGISTRIES
from xmodal.data.source import dataset_contract
from xmodal.evaluation.probe import probe_contract
from xmodal.testing import checks

HERE = __name__.partition(".")[0]  # the package a class of this module is registered by


def test_every_kind_declares_its_contract_in_the_contracts_group():
    declared = {
        ep.name: ep.value
        for ep in metadata.entry_points(group="xmodal.contracts")
        if ep.dist is not None and ep.dist.name == OWN_PACKAGE
    }
    assert set(declared) == set(REGISTRIES)
    assert declared["datasets"] == "xmodal.data.source:dataset_contract"
    assert declared["probes"] == "xmodal.evaluation.probe:probe_contract"
    assert DATASETS._contract() is dataset_contract and PROBES._contract() is probe_contract


@pytest.mark.parametrize(
    "kind, name", [(kind, name) for kind, r in REGISTRIES.items() for name in r.names()]
)
def test_every_built_in_passes_its_kinds_contract(kind, name):
    registry = REGISTRIES[kind]
    registry.check_plugin(name, registry.get(name), name)  # raises XmodalError when broken


# --- datasets ---------------------------------------------------------------------------------


@dataclasses.dataclass
class SetOptions:
    size: int = 4


class GoodSet:
    """A dataset whose members are all in order."""

    name = "good-set"
    modalities = ("rgb", "depth")
    options = SetOptions
    example_options: ClassVar[dict[str, Any]] = {"size": 2}

    def prepare(self, options, cache_path, progress=None):
        return cache_path

    def load(self, cache_path):
        raise NotImplementedError

    def fingerprint(self, options):
        return {}


def _set(**members: Any) -> type:
    """A subclass of :class:`GoodSet` with ``members`` set."""
    return type("BadSet", (GoodSet,), members)


class NoLoad:
    name = "no-load"
    modalities = ("rgb",)
    options = SetOptions

    def prepare(self, options, cache_path, progress=None):
        return cache_path


class ArgumentSet(GoodSet):
    def __init__(self, root: str) -> None:
        self.root = root


def make_dataset(options):
    """A function, not a class."""


BAD_SETS = [
    (make_dataset, "dataset 'bad-set' must be a class (built with no arguments)"),
    (
        ArgumentSet,
        "dataset 'bad-set' must be built with no arguments, but its constructor takes "
        "(root: 'str') -> 'None'; make those arguments options",
    ),
    (_set(name=""), "dataset 'bad-set'.name must be a non-empty str, got ''"),
    (
        _set(modalities="rgb"),
        "dataset 'bad-set'.modalities must be a tuple of front-end names",
    ),
    (
        _set(modalities=("rgb", "lidar")),
        "dataset 'bad-set'.modalities ['lidar'] name no registered front end (see 'xmodal list "
        "frontends'); register them or fix the names",
    ),
    (
        _set(options=None),
        "dataset 'bad-set'.options must be a dataclass type (a dataset has options: an empty "
        "dataclass for none), got None",
    ),
    (_set(options=dict), "'bad-set'.options must be a dataclass type, got <class 'dict'>"),
    (NoLoad, "dataset 'bad-set' has no load(cache_path) method; add one"),
    (
        _set(load=lambda self: None),
        "dataset 'bad-set'.load takes (self), but xmodal calls it as load(cache_path); change "
        "its parameters",
    ),
    (
        _set(prepare=lambda self, options, cache_path: None),
        "xmodal calls it as prepare(options, cache_path, progress=...)",
    ),
    (_set(fingerprint=3), "dataset 'bad-set'.fingerprint must be a method fingerprint(options)"),
    (_set(labelled="yes"), "dataset 'bad-set'.labelled must be True or False, got 'yes'"),
    (
        _set(example_options={"size": 2, "sise": 3}),
        "dataset 'bad-set'.example_options sets ['sise'], not options of SetOptions (size)",
    ),
]


def _where(entry: Any) -> str:
    qualname = getattr(entry, "__qualname__", type(entry).__name__)
    return (
        f"plugin 'bad-set' ({entry.__module__}.{qualname}, registered in code) from package "
        f"'{HERE}'"
    )


def test_a_good_dataset_passes_and_is_registered(monkeypatch):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    monkeypatch.setattr(DATASETS, "_packages", dict(DATASETS._packages))
    DATASETS.add("good-set", GoodSet)
    assert DATASETS.get("good-set") is GoodSet and DATASETS.package("good-set") == HERE


@pytest.mark.parametrize("entry, reason", BAD_SETS, ids=[r[:40] for _, r in BAD_SETS])
def test_a_bad_dataset_registered_in_code_is_refused_naming_it_and_the_fix(entry, reason):
    with pytest.raises(XmodalError) as info:
        DATASETS.add("bad-set", entry)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"datasets: {_where(entry)} breaks the dataset contract: ")
    assert reason in message
    assert "bad-set" not in DATASETS


# --- probes -----------------------------------------------------------------------------------


@dataclasses.dataclass
class ProbeOptions:
    k: int = 3


class GoodProbe:
    """A probe whose members are all in order."""

    options = ProbeOptions
    metrics = ("accuracy",)

    def __init__(self, config: ProbeOptions | None = None) -> None:
        self.config = config or ProbeOptions()

    def evaluate(self, train, val, test, num_classes):
        return {"accuracy": 1.0}


def _probe(**members: Any) -> type:
    return type("BadProbe", (GoodProbe,), members)


class NoOptionsArgument(GoodProbe):
    def __init__(self) -> None:
        pass


class NoEvaluate:
    def __init__(self, config=None) -> None:
        pass


def make_probe(config):
    """A function, not a class."""


BAD_PROBES = [
    (make_probe, "probe 'bad-probe' must be a class, built as Cls(options)"),
    (
        NoOptionsArgument,
        "probe 'bad-probe' must be built as NoOptionsArgument(options) (one positional "
        "argument: its options, or None without options), but its constructor takes () -> 'None'",
    ),
    (NoEvaluate, "probe 'bad-probe' has no evaluate(train, val, test, num_classes=...) method"),
    (
        _probe(consumes_maps=True),
        "probe 'bad-probe' has no evaluate_maps(train, val, test, num_classes=...) method (it "
        "sets consumes_maps = True); add one",
    ),
    (
        _probe(evaluate=lambda self, train, test: {}),
        "probe 'bad-probe'.evaluate takes (self, train, test), but xmodal calls it as "
        "evaluate(train, val, test, num_classes=...); change its parameters",
    ),
    (_probe(consumes_pairs=1), "probe 'bad-probe': consumes_pairs must be True or False"),
    (
        _probe(consumes_pairs=True, consumes_text=True, evaluate_pairs=lambda self, t, s: {}),
        "probe 'bad-probe' sets consumes_pairs and consumes_text: a probe consumes one kind of "
        "input; set one of them",
    ),
    (
        _probe(metrics="accuracy"),
        "probe 'bad-probe'.metrics must be a non-empty tuple of metric names (keys of its "
        "result), got 'accuracy'",
    ),
    (_probe(metrics=()), "probe 'bad-probe'.metrics must be a non-empty tuple"),
    (_probe(options=ProbeOptions()), "'bad-probe'.options must be a dataclass type"),
]


def test_a_good_probe_passes_and_is_registered(monkeypatch):
    monkeypatch.setattr(PROBES, "_entries", dict(PROBES._entries))
    monkeypatch.setattr(PROBES, "_packages", dict(PROBES._packages))
    PROBES.add("good-probe", GoodProbe)
    assert PROBES.get("good-probe") is GoodProbe
    for flag, method in (("consumes_maps", "evaluate_maps"), ("consumes_pairs", "evaluate_pairs")):
        call = (lambda self, a, b, c, num_classes: {}) if "maps" in method else lambda s, t, u: {}
        probe_contract("other", type("Other", (GoodProbe,), {flag: True, method: call}))


@pytest.mark.parametrize("entry, reason", BAD_PROBES, ids=[r[:40] for _, r in BAD_PROBES])
def test_a_bad_probe_registered_in_code_is_refused_naming_it_and_the_fix(entry, reason):
    with pytest.raises(XmodalError) as info:
        PROBES.add("bad-probe", entry)
    message = str(info.value)
    qualname = getattr(entry, "__qualname__", "")
    assert "\n" not in message
    assert message.startswith(
        f"probes: plugin 'bad-probe' ({entry.__module__}.{qualname}, registered in code) from "
        f"package '{HERE}' breaks the probe contract: "
    )
    assert reason in message
    assert "bad-probe" not in PROBES


# --- the same contracts through entry points --------------------------------------------------

PLUGIN = '''
"""A package whose dataset and probe break their contracts."""

import dataclasses


@dataclasses.dataclass
class Options:
    size: int = 4


class SonarSet:
    """Serves a modality nobody registered."""

    name = "sonar-set"
    modalities = ("sonar",)
    options = Options

    def prepare(self, options, cache_path, progress=None):
        return cache_path

    def load(self, cache_path):
        raise NotImplementedError


class ForgetfulProbe:
    """Forgets its evaluate method."""

    metrics = ("accuracy",)

    def __init__(self, config=None):
        pass
'''


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    return write_dist(
        tmp_path_factory.mktemp("bad-site"),
        "bad-parts",
        {"bad_parts": PLUGIN},
        {
            "xmodal.datasets": {"sonar-set": "bad_parts:SonarSet"},
            "xmodal.probes": {"forgetful": "bad_parts:ForgetfulProbe"},
        },
    )


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.name=sonar-set",
            "datasets: plugin 'sonar-set' (bad_parts:SonarSet) from package 'bad-parts' breaks "
            "the dataset contract: dataset 'sonar-set'.modalities ['sonar'] name no registered "
            "front end (see 'xmodal list frontends'); register them or fix the names",
        ),
        (
            "probe.probes=[linear,forgetful]",
            "probes: plugin 'forgetful' (bad_parts:ForgetfulProbe) from package 'bad-parts' "
            "breaks the probe contract: probe 'forgetful' has no evaluate(train, val, test, "
            "num_classes=...) method; add one",
        ),
    ],
    ids=["dataset", "probe"],
)
def test_a_bad_plugin_from_an_entry_point_stops_a_run_with_one_line(
    bad_site, tmp_path, override, message
):
    out = tmp_path / "run"
    proc = run_xmodal(bad_site, "run", "paired", "--out", str(out), "--set", override, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]
    assert not out.exists()


def test_xmodal_check_names_each_broken_plugin_with_its_package(bad_site, tmp_path):
    proc = run_xmodal(bad_site, "check", "bad-parts", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in proc.stdout.splitlines()
        if line.startswith("│ ")
    ]
    assert {tuple(r[:5]) for r in rows} == {
        ("sonar-set", "datasets", "bad-parts", "load", "failed"),
        ("forgetful", "probes", "bad-parts", "load", "failed"),
    }


# --- xmodal.testing reuses the contracts ------------------------------------------------------


def test_the_protocol_checks_run_the_load_contract_then_their_own(monkeypatch):
    with pytest.raises(AssertionError, match="^dataset 'x'.modalities \\['lidar'\\] name no"):
        checks.dataset_protocol("x", _set(modalities=("lidar",)))
    with pytest.raises(AssertionError, match="^probe 'x' has no evaluate\\(train"):
        checks.probe_protocol("x", NoEvaluate)
    checks.dataset_protocol("x", GoodSet)
    monkeypatch.setattr(PROBES, "_entries", {**PROBES._entries, "good-probe": GoodProbe})
    checks.probe_protocol("good-probe", GoodProbe)  # built from its options, looked up by name

    import xmodal.data.source
    import xmodal.evaluation.probe

    seen = []

    def spy(name: str, entry: Any) -> None:
        seen.append((name, entry))
        raise ValueError(f"spied on {name}")

    monkeypatch.setattr(xmodal.data.source, "dataset_contract", spy)
    monkeypatch.setattr(xmodal.evaluation.probe, "probe_contract", spy)
    with pytest.raises(AssertionError, match="^spied on d$"):
        checks.dataset_protocol("d", GoodSet)
    with pytest.raises(AssertionError, match="^spied on p$"):
        checks.probe_protocol("p", GoodProbe)
    assert seen == [("d", GoodSet), ("p", GoodProbe)]


def test_the_dataset_protocol_builds_it_and_checks_its_example_options():
    class Renamed(GoodSet):
        def __init__(self) -> None:
            self.name = "other"

    with pytest.raises(AssertionError, match="built, it says name 'other'"):
        checks.dataset_protocol("renamed", Renamed)

    @dataclasses.dataclass
    class Positive:
        size: int = 4

        def __post_init__(self) -> None:
            if self.size < 1:
                raise ValueError("size must be >= 1")

    with pytest.raises(ValueError, match="size must be >= 1"):
        checks.dataset_protocol("zero", _set(options=Positive, example_options={"size": 0}))
