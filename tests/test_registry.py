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
    def __init__(self, name, value, obj=None, error=None, dist=None):
        self.name, self.value, self._obj, self._error = name, value, obj, error
        self.dist = dist

    def load(self):
        if self._error:
            raise self._error
        return self._obj


def test_entry_point_plugins_are_loaded_lazily(monkeypatch):
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [
            _FakeEntryPoint(
                "plugin-net",
                "pkg.mod:build",
                obj="PLUGIN",
                dist=type("Dist", (), {"name": "my-plugin"})(),
            )
        ]

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    reg: Registry[str] = Registry("encoders", "xmodal.encoders")
    reg.add("builtin", "B")
    assert calls == []
    assert reg.get("plugin-net") == "PLUGIN"
    assert reg.names() == ["builtin", "plugin-net"]
    assert calls == ["xmodal.encoders"]
    assert reg.package("plugin-net") == "my-plugin"  # what 'xmodal list' shows


def test_broken_plugin_names_itself(monkeypatch):
    monkeypatch.setattr(
        metadata,
        "entry_points",
        lambda group: [
            _FakeEntryPoint("bad", "pkg.bad:thing", error=ImportError("no module named pkg"))
        ],
    )
    reg: Registry[str] = Registry("losses", "xmodal.losses")
    with pytest.raises(XmodalError, match="plugin 'bad' \\(pkg.bad:thing\\).*failed to load"):
        reg.names()


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
