"""A package installed beside xmodal adds a front end, a dataset, a method and a probe.

Through entry points, each with options reachable from ``--set`` with the built-ins' checks; a
plugin that breaks its kind's contract is named with its package, by the registry and by
``xmodal check``. Each run is a fresh process, as a user's is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from plugin_package import DISTRIBUTION, install

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "data.thermal_scenes.image_size=16",
    "data.thermal_scenes.num_train=48",
    "data.thermal_scenes.num_val=24",
    "data.thermal_scenes.num_test=24",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def _xmodal(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "400",  # rich tables on one line per row
    }
    return subprocess.run(
        [sys.executable, "-m", "xmodal", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _run_args(out: Path, *extra: str) -> list[str]:
    sets = [
        *TINY,
        "data.name=thermal-scenes",
        "data.thermal_scenes.ambient_c=25",
        "distill.students=[thermal]",
        "distill.methods=[none,cosine]",
        "distill.cosine.weight=2",
        "probe.probes=[linear,centroid]",
        "probe.centroid.metric=euclidean",
        "frontends.thermal.scale_k=5",
        *extra,
    ]
    return ["run", "scenes", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return install(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    return install(tmp_path_factory.mktemp("broken") / "site", broken=True)


def test_list_shows_each_plugin_with_its_package(site):
    proc = _xmodal(site, "list")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("│ ")}
    for name in ("thermal", "thermal-scenes", "cosine", "centroid"):
        assert DISTRIBUTION in lines[name], lines.get(name)


def _check_rows(stdout: str) -> list[list[str]]:
    """The rows of ``xmodal check``'s table: component, kind, package, check, result, reason."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines()]
    return [r for r in rows if len(r) == 6 and r[0] and r[0] != "component"]


def test_xmodal_check_passes_the_package(site):
    proc = _xmodal(site, "check", DISTRIBUTION)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = _check_rows(proc.stdout)
    assert {(r[0], r[1]) for r in rows} == {
        ("thermal", "frontends"),
        ("thermal-scenes", "datasets"),
        ("cosine", "methods"),
        ("centroid", "probes"),
    }
    assert {r[2] for r in rows} == {DISTRIBUTION}
    assert {r[4] for r in rows if r[3] != "prepare+load"} == {"ok"}  # no example_options


def test_a_run_uses_every_plugin_and_its_options(site, tmp_path):
    out = tmp_path / "run"
    proc = _xmodal(site, *_run_args(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} >= {
        ("thermal", "cosine", "centroid"),
        ("thermal", "none", "linear"),
        ("rgb", "teacher", "centroid"),
    }
    assert all(0 <= r["value"] <= 1 for r in rows)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["distill"]["cosine"] == {"weight": 2.0}
    assert config["probe"]["centroid"] == {"metric": "euclidean"}
    assert config["data"]["thermal_scenes"]["ambient_c"] == 25.0
    assert config["frontends"]["thermal"] == {"offset_k": 273.15, "scale_k": 5.0}
    meta = json.loads((out / "distill/seed0/thermal/cosine/encoder.json").read_text())
    assert meta["frontend_options"]["scale_k"] == 5.0  # the option reached the encoder


def test_the_same_options_from_a_yaml_file(site, tmp_path):
    config = tmp_path / "plugins.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "thermal-scenes", "thermal_scenes": {"ambient_c": 18.0}},
                "distill": {
                    "students": ["thermal"],
                    "methods": ["none", "cosine"],
                    "cosine": {"weight": 3.0},
                },
                "probe": {"probes": ["centroid"], "centroid": {"metric": "cosine"}},
                "frontends": {"thermal": {"offset_k": 270.0}},
            }
        )
    )
    out = tmp_path / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    proc = _xmodal(site, "run", "scenes", "--config", str(config), "--out", str(out), *sets)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["distill"]["cosine"] == {"weight": 3.0}
    assert resolved["probe"]["centroid"] == {"metric": "cosine"}
    assert resolved["data"]["thermal_scenes"]["ambient_c"] == 18.0
    assert resolved["frontends"]["thermal"] == {"offset_k": 270.0, "scale_k": 10.0}
    assert {r["probe"] for r in json.loads((out / "results.json").read_text())} == {"centroid"}


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.thermal_scenes.ambiant_c=25",
            "unknown config key 'data.thermal_scenes.ambiant_c'; "
            "did you mean 'data.thermal_scenes.ambient_c'?",
        ),
        (
            "distill.cosine.weigth=2",
            "unknown config key 'distill.cosine.weigth'; did you mean 'distill.cosine.weight'?",
        ),
        (
            "probe.centroid.metirc=cosine",
            "unknown config key 'probe.centroid.metirc'; did you mean 'probe.centroid.metric'?",
        ),
        (
            "frontends.thermal.scale=5",
            "unknown config key 'frontends.thermal.scale'; "
            "did you mean 'frontends.thermal.scale_k'?",
        ),
        ("probe.centroid.metric=manhattan", "'manhattan' is not one of 'cosine', 'euclidean'"),
        ("distill.methods=[none,cosin]", "unknown method 'cosin': did you mean 'cosine'"),
        ("frontends.thermal.scale_k=warm", "frontends.thermal.scale_k': expected a number"),
    ],
)
def test_plugin_options_are_checked_like_built_ins(site, tmp_path, override, message):
    out = tmp_path / "run"
    proc = _xmodal(site, *_run_args(out, override))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_plugin_that_breaks_its_contract_is_named_with_its_package(broken_site):
    proc = _xmodal(broken_site, "list", "frontends")
    assert proc.returncode == 1  # its row says why; the others are listed
    [row] = [line for line in proc.stdout.splitlines() if line.startswith("│ broken ")]
    assert (
        f"BROKEN: plugin 'broken' ({'xmodal_thermal_demo'}:BrokenFrontend) from package "
        f"'{DISTRIBUTION}' breaks the modality contract: front end 'broken' lacks out_channels"
    ) in row
    assert any(line.startswith("│ thermal ") for line in proc.stdout.splitlines())
    assert proc.stderr.splitlines() == [
        f"error: 1 entry failed to load: frontends:broken (package '{DISTRIBUTION}'); fix or "
        "uninstall the package (its row says why; 'xmodal check frontends:broken' runs its checks)"
    ]


def test_xmodal_check_names_the_broken_component_checks_the_rest_and_exits_1(broken_site):
    proc = _xmodal(broken_site, "check", DISTRIBUTION)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = _check_rows(proc.stdout)
    [row] = [r for r in rows if r[0] == "broken"]
    assert row[:5] == ["broken", "frontends", DISTRIBUTION, "load", "failed"]
    assert row[5].startswith("frontends: plugin 'broken' (xmodal_thermal_demo:BrokenFrontend)")
    assert "breaks the modality contract: front end 'broken' lacks out_channels" in row[5]
    others = [r for r in rows if r[0] != "broken"]
    assert {r[0] for r in others} == {"thermal", "thermal-scenes", "cosine", "centroid"}
    assert {r[4] for r in others if r[3] != "prepare+load"} == {"ok"}
    assert f"1 of {len(rows)} checks failed (frontends:broken)" in proc.stdout
