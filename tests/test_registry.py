"""Registries: lookup, suggestions, duplicates, wildcards, entry-point plugins."""

from __future__ import annotations

from importlib import metadata

import pytest

from xmodal.core.errors import XmodalError
from xmodal.core.registry import Registry, UnknownNameError


def test_register_and_get_and_wildcards():
    reg: Registry[object] = Registry("widgets")

    @reg.register("resnet8")
    def build():
        """Tiny net."""

    reg.add("resnet20", object())
    reg.add("mlp", object())
    assert reg.get("resnet8") is build
    assert reg.names("resnet*") == ["resnet20", "resnet8"]
    assert reg.describe("resnet8") == "Tiny net."
    assert "mlp" in reg and "cnn" not in reg and len(reg) == 3


def test_unknown_name_suggests_close_matches():
    reg: Registry[int] = Registry("encoders")
    reg.add("resnet8", 1)
    reg.add("resnet18", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("resnet9")
    message = str(info.value)
    assert "unknown encoder 'resnet9'" in message and "did you mean 'resnet8'" in message
    assert isinstance(info.value, XmodalError)


def test_duplicate_name_raises_and_keeps_first():
    reg: Registry[int] = Registry("losses")
    reg.add("kd", 1)
    with pytest.raises(XmodalError, match="already registered"):
        reg.add("kd", 2)
    assert reg.get("kd") == 1


class _FakeEntryPoint:
    def __init__(self, name, value, obj=None, error=None, dist=None, group="xmodal.encoders"):
        self.name, self.value, self._obj, self._error = name, value, obj, error
        self.dist = type("Dist", (), {"name": dist})() if dist else None
        self.group = group
        self.loads = 0

    def load(self):
        self.loads += 1
        if self._error:
            raise self._error
        return self._obj


def _fake_metadata(monkeypatch, groups):
    """``metadata.entry_points`` answering from ``{group: [entry points]}``; records the groups."""
    calls = []

    def entry_points(group):
        calls.append(group)
        return groups.get(group, [])

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    return calls


def test_names_come_from_entry_points_and_an_entry_loads_when_first_needed(monkeypatch):
    plugin = _FakeEntryPoint("plugin-net", "pkg.mod:build", obj="PLUGIN", dist="my-plugin")
    calls = _fake_metadata(monkeypatch, {"xmodal.encoders": [plugin]})
    reg: Registry[str] = Registry("encoders", "xmodal.encoders")
    assert calls == []  # nothing read before the first use
    reg.add("builtin", "B")
    assert reg.names() == ["builtin", "plugin-net"] and "plugin-net" in reg and len(reg) == 2
    assert reg.package("plugin-net") == "my-plugin"  # what 'xmodal list' shows
    assert plugin.loads == 0  # names, membership and packages import nothing
    assert reg.get("plugin-net") == "PLUGIN" and reg.get("plugin-net") == "PLUGIN"
    assert plugin.loads == 1 and calls == ["xmodal.encoders"]
    with pytest.raises(UnknownNameError, match="unknown encoder 'plugin-nte': did you mean"):
        reg.check_name("plugin-nte")


def test_broken_plugin_is_listed_and_names_itself_when_used(monkeypatch):
    bad = _FakeEntryPoint(
        "bad", "pkg.bad:thing", error=ImportError("no module named pkg"), dist="bad-pkg"
    )
    _fake_metadata(monkeypatch, {"xmodal.losses": [bad]})
    reg: Registry[str] = Registry("losses", "xmodal.losses")
    assert reg.names() == ["bad"]
    with pytest.raises(
        XmodalError,
        match="plugin 'bad' \\(pkg.bad:thing\\) from package 'bad-pkg'.*failed to load.*"
        "fix or uninstall that package",
    ):
        reg.get("bad")


def test_a_name_declared_by_two_packages_names_both(monkeypatch):
    _fake_metadata(
        monkeypatch,
        {
            "xmodal.encoders": [
                _FakeEntryPoint("net", "a.mod:build", obj=1, dist="pkg-a"),
                _FakeEntryPoint("net", "b.mod:build", obj=2, dist="pkg-b"),
            ]
        },
    )
    reg: Registry[int] = Registry("encoders", "xmodal.encoders")
    with pytest.raises(
        XmodalError, match="'net' is declared twice, by package 'pkg-a' .* by package 'pkg-b'"
    ):
        reg.names()


def test_code_may_register_a_declared_name_only_from_the_declared_module(monkeypatch):
    declared = _FakeEntryPoint("net", "pkg.nets", obj=None, dist="pkg")
    _fake_metadata(monkeypatch, {"xmodal.encoders": [declared]})
    reg: Registry[object] = Registry("encoders", "xmodal.encoders")

    def build():
        """A net."""

    build.__module__ = "pkg.other"
    with pytest.raises(XmodalError, match="'net' is declared by package 'pkg' \\(pkg.nets\\)"):
        reg.add("net", build)
    build.__module__ = "pkg.nets"  # the module the entry point names registers it
    reg.add("net", build)
    assert reg.get("net") is build and declared.loads == 0


def test_a_bare_module_entry_point_must_register_its_name(monkeypatch):
    import types

    empty = types.ModuleType("pkg.empty")
    _fake_metadata(
        monkeypatch,
        {"xmodal.encoders": [_FakeEntryPoint("net", "pkg.empty", obj=empty, dist="pkg")]},
    )
    reg: Registry[object] = Registry("encoders", "xmodal.encoders")
    with pytest.raises(XmodalError, match="names module 'pkg.empty', which registers no encoder"):
        reg.get("net")


def test_an_old_group_is_read_with_one_warning_naming_the_new_group(monkeypatch):
    from xmodal.core import registry
    from xmodal.core.errors import DeprecatedSpelling

    monkeypatch.setattr(registry, "_WARNED", set())
    old = [
        _FakeEntryPoint(n, f"old.mod:{n}", obj=n, dist="old-plugin", group="xmodal.losses")
        for n in ("a", "b")
    ]
    _fake_metadata(monkeypatch, {"xmodal.losses": old})
    with pytest.warns(DeprecatedSpelling) as caught:
        reg: Registry[str] = Registry("methods", "xmodal.methods", legacy_groups=("xmodal.losses",))
        assert reg.get("a") == "a" and reg.names() == ["a", "b"]
        again: Registry[str] = Registry(
            "methods", "xmodal.methods", legacy_groups=("xmodal.losses",)
        )
        assert again.names() == ["a", "b"]
    assert len(caught) == 1  # once per process, not per entry or registry
    message = str(caught[0].message)
    assert "'old-plugin'" in message and "'xmodal.losses'" in message
    assert "declare them in 'xmodal.methods'" in message


def test_a_stale_install_is_one_line_naming_the_fix(monkeypatch):
    plugin = _FakeEntryPoint("net", "pkg.mod:build", obj=1, dist="other")
    _fake_metadata(monkeypatch, {"xmodal.backbones": [plugin]})
    reg: Registry[int] = Registry("backbones", "xmodal.backbones", own_package="xmodal")
    with pytest.raises(XmodalError, match="declares none .* stale; reinstall it \\(pip install -e"):
        reg.names()


def test_a_plugin_is_checked_against_the_contract_xmodal_declares(monkeypatch):
    def contract(name, entry):
        if not hasattr(entry, "out_channels"):
            raise TypeError("has no out_channels")

    _fake_metadata(
        monkeypatch,
        {
            "xmodal.frontends": [
                _FakeEntryPoint("rgb", "xmodal.x:RGB", obj=object, dist="xmodal"),
                _FakeEntryPoint("heat", "heat.mod:Heat", obj=object, dist="heat-pkg"),
            ],
            "xmodal.contracts": [
                _FakeEntryPoint("frontends", "heat.mod:contract", obj=None, dist="heat-pkg"),
                _FakeEntryPoint("frontends", "xmodal.x:contract", obj=contract, dist="xmodal"),
            ],
        },
    )
    reg: Registry[object] = Registry(
        "frontends", "xmodal.frontends", noun="modality", own_package="xmodal"
    )
    with pytest.raises(
        XmodalError,
        match="plugin 'heat' \\(heat.mod:Heat\\) from package 'heat-pkg' breaks the modality "
        "contract: has no out_channels",
    ):
        reg.get("heat")
    assert reg.contract is contract  # xmodal's, not the plugin's entry in the contracts group


def test_project_registries_hold_the_builtins_after_import_xmodal_alone():
    import xmodal

    assert {"resnet8", "resnet18", "resnet50"} <= set(xmodal.list_components("backbones"))
    assert {"none", "supervised", "wcord", "wcord-global", "wcord-local"} <= set(
        xmodal.list_components("methods")
    )
    assert (
        "scenes" in xmodal.DATASETS and "linear" in xmodal.PROBES and "scenes" in xmodal.PIPELINES
    )
    assert {"rgb", "depth", "audio"} <= set(xmodal.list_components("frontends"))
    with pytest.raises(XmodalError, match="unknown kind 'losses'"):
        xmodal.list_components("losses")


def test_messages_use_a_proper_singular():
    from xmodal.core.registry import METHODS

    assert [Registry(k).singular for k in ("encoders", "modalities", "classes", "boxes")] == [
        "encoder",
        "modality",
        "class",
        "box",
    ]
    with pytest.raises(XmodalError, match="unknown method 'wcrod': did you mean 'wcord'"):
        METHODS.get("wcrod")


def test_pyproject_declares_exactly_the_builtins_and_each_loads_to_what_its_module_registers():
    from pathlib import Path

    import tomllib

    from xmodal.core.registry import REGISTRIES
    from xmodal.pipelines.spec import shipped_specs

    root = Path(__file__).resolve().parent.parent
    groups = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    for kind, registry in REGISTRIES.items():
        declared = groups[f"xmodal.{kind}"]
        for name in declared:  # loads each (imports every layer)
            registry.get(name)
        own = {n for n in registry.names() if registry.package(n) == "xmodal"}
        assert own == set(declared), (kind, own ^ set(declared))
        for name, value in declared.items():
            module, _, attr = value.partition(":")
            entry = registry.get(name)
            assert getattr(entry, "__module__", type(entry).__module__) == module, (kind, name)
            if attr:
                assert getattr(__import__(module, fromlist=[attr]), attr) is entry, (kind, name)
    assert set(groups["xmodal.pipelines"]) == {s.name for s in shipped_specs()}
    assert set(groups["xmodal.contracts"]) <= set(REGISTRIES)
    for kind, registry in REGISTRIES.items():
        if kind in groups["xmodal.contracts"]:
            assert registry._contract() is not None, kind


def test_the_ground_floor_names_no_higher_layer():
    """core/ imports nothing above it, by statement or by string.

    Entry points, declared in pyproject.toml, name the built-ins.
    """
    import re
    from pathlib import Path

    core = Path(__file__).resolve().parent.parent / "xmodal" / "core"
    upward = re.compile(r"xmodal\.(data|encoders|objectives|training|evaluation|pipelines|cli)\b")
    found = [
        f"{path.name}:{i}: {line.strip()}"
        for path in sorted(core.glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if upward.search(line)
    ]
    assert found == []


def test_listing_and_checking_names_import_no_layer(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xmodal.core.registry import REGISTRIES, METHODS\n"
        "names = {k: r.names() for k, r in REGISTRIES.items()}\n"
        "packages = {r.package(n) for r in REGISTRIES.values() for n in r.names()}\n"
        "assert 'wcord' in METHODS and 'resnet8' in names['backbones'], names\n"
        "assert packages == {'xmodal'}, packages\n"
        "layers = ('data', 'encoders', 'objectives', 'training', 'evaluation', 'pipelines')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')"
        " or m.split('.')[:2][-1] in layers and m.startswith('xmodal.')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
