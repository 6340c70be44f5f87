"""Component identity in every cache key (issue 21).

Each unit's key names the package, version and source digest of every component it runs, so
that editing a plugin's source recomputes exactly the units that use it, with one line naming
the component; exports record the packages they need, and loading one without them names the
package to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ident_plugin import DISTRIBUTION, edit, install
from tiny_scenes import TINY_DATA, TINY_TRAINING

import xmodal
from xmodal.core.cache import Unit, file_digest
from xmodal.core.errors import DataError
from xmodal.core.identity import changed_components, component_changes, component_identity
from xmodal.encoders.base import create_encoder
from xmodal.encoders.export import export_encoder, load_encoder

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "kind, name, module",
    [
        ("backbones", "resnet8", "xmodal/encoders/cifar_resnet.py"),
        ("frontends", "depth", "xmodal/encoders/frontends.py"),
        ("methods", "wcord", "xmodal/objectives/wcord.py"),
        ("probes", "linear", "xmodal/evaluation/linear_probe.py"),
        ("datasets", "scenes", "xmodal/data/scenes_source.py"),
    ],
)
def test_a_built_in_is_identified_by_xmodal_and_its_own_module(kind, name, module):
    identity = component_identity(kind, name)
    assert identity == {
        "name": name,
        "package": "xmodal",
        "version": xmodal.__version__,
        "source": file_digest(ROOT / module),
    }
    identity["source"] = "changed by the caller"
    assert component_identity(kind, name)["source"] == file_digest(ROOT / module)  # a copy


def _ident(source: str = "aaaa", version: str = "0.1", package: str = "demo", name: str = "tiny"):
    return {"name": name, "package": package, "version": version, "source": source}


@pytest.mark.parametrize(
    "now, reason",
    [
        (_ident(source="bbbb"), "backbone 'tiny' changed (source digest)"),
        (_ident(version="0.2"), "backbone 'tiny' changed (demo 0.1 -> 0.2)"),
        (
            _ident(version="0.2", source="bbbb"),
            "backbone 'tiny' changed (demo 0.1 -> 0.2, source digest)",
        ),
        (_ident(package="other"), "backbone 'tiny' changed (package 'demo' -> 'other')"),
        (_ident(name="resnet8", source="bbbb"), None),  # another backbone: a config change
        (_ident(), None),
    ],
)
def test_a_changed_component_is_named_with_what_changed(now, reason):
    changes = component_changes(
        {"backbone": _ident(), "method": _ident(name="m")},
        {
            "backbone": now,
            "method": _ident(name="m"),
        },
    )
    assert changes == ([reason] if reason else [])


def test_a_unit_says_which_component_changed_and_recomputes(tmp_path):
    notices: list[str] = []

    def unit(identity: dict, setting: int = 1) -> Unit:
        inputs = {"setting": setting, "components": {"backbone": identity}}
        return Unit(tmp_path / "unit", inputs, notice=notices.append, explain=changed_components)

    unit(_ident()).finish({"value": 1})
    assert unit(_ident()).record() == {"value": 1, "files": {}}
    assert unit(_ident(), setting=2).record() is None and notices == []  # a setting: silently
    assert unit(_ident(source="bbbb")).record() is None
    assert notices == [
        f"{tmp_path / 'unit'}: backbone 'tiny' changed (source digest); recomputing it"
    ]


def test_an_export_names_the_packages_it_needs(tmp_path):
    encoder = create_encoder("resnet8", "depth", width_multiplier=0.25)
    meta_path = export_encoder(
        encoder, tmp_path / "export", "resnet8", {"width_multiplier": 0.25}, {}
    )
    meta = json.loads(meta_path.read_text())
    own = {"package": "xmodal", "version": xmodal.__version__}
    assert meta["components"] == {
        "frontend": {"name": "depth", **own},
        "backbone": {"name": "resnet8", **own},
    }
    load_encoder(meta_path)  # installed: loads
    meta["backbone"] = "tiny1d"
    meta["components"]["backbone"] = {"name": "tiny1d", "package": "xmodal-imu", "version": "0.1.0"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as info:
        load_encoder(meta_path)
    assert str(info.value) == (
        f"{meta_path} needs package 'xmodal-imu' (0.1.0) for backbone 'tiny1d': "
        "pip install xmodal-imu"
    )


def test_an_export_names_the_package_of_a_missing_front_end(tmp_path):
    meta_path = export_encoder(create_encoder("resnet8", "depth"), tmp_path, "resnet8", {}, {})
    meta = json.loads(meta_path.read_text())
    meta["modality"] = "imu"
    meta["components"]["frontend"] = {"name": "imu", "package": "xmodal-imu", "version": ""}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as info:
        load_encoder(tmp_path)
    assert str(info.value) == (
        f"{meta_path} needs package 'xmodal-imu' for front end 'imu': pip install xmodal-imu"
    )


def test_probing_an_export_whose_package_is_missing_names_it(tmp_path, capsys):
    from xmodal.cli.main import main

    export = tmp_path / "export"
    meta_path = export_encoder(create_encoder("resnet8", "depth"), export, "resnet8", {}, {})
    meta = json.loads(meta_path.read_text())
    meta["backbone"] = "tiny1d"
    meta["components"]["backbone"] = {"name": "tiny1d", "package": "xmodal-imu", "version": "0.1.0"}
    meta_path.write_text(json.dumps(meta))
    argv = ["probe", str(export), "--probes", "linear", "--out", str(tmp_path / "out")]
    assert main([*argv, *[a for s in TINY_DATA for a in ("--set", s)]]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {meta_path} needs package 'xmodal-imu' (0.1.0) for backbone 'tiny1d': "
        "pip install xmodal-imu"
    ]


# --- an installed plugin whose source a user edits between two runs --------------------------

TINY = [
    *TINY_DATA,
    *TINY_TRAINING,
    "teacher.task=probe-labels",
    "distill.students=[depth]",
    "distill.methods=[none,supervised]",
    "distill.encoder.name=tinyconv",  # the plugin's backbone: students only
    "probe.probes=[linear,nearest]",  # the plugin's probe
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
    "runtime.threads=1",
]
STUDENTS = {"distill/seed0/depth/none", "distill/seed0/depth/supervised"}
NEAREST = {f"probe/seed0/{m}/nearest" for m in ("rgb-teacher", "depth-none", "depth-supervised")}


def _run(site: Path, out: Path) -> str:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "1000",  # one console line per message
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), str(ROOT)]),
    }
    argv = ["run", "scenes", "--out", str(out), *[a for s in TINY for a in ("--set", s)]]
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _units(out: Path) -> dict[str, tuple[int, int]]:
    """Every finished unit's folder (relative) -> its done.json's inode and mtime."""
    found = {}
    for done in out.rglob("done.json"):
        stat = done.stat()
        found[done.parent.relative_to(out).as_posix()] = (stat.st_ino, stat.st_mtime_ns)
    return found


def _rewritten(before: dict, after: dict) -> set[str]:
    assert set(before) == set(after)
    return {unit for unit in after if after[unit] != before[unit]}


def test_editing_a_plugin_recomputes_exactly_the_units_that_use_it(tmp_path):
    site, out = install(tmp_path / "site"), tmp_path / "run"
    _run(site, out)
    first = _units(out)
    assert STUDENTS | NEAREST <= set(first) and "teacher/seed0" in first
    rows = json.loads((out / "results.json").read_text())
    assert {json.dumps(r["probe_options"]) for r in rows if r["probe"] == "nearest"} == {'{"k": 1}'}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["distill"]["encoder"] == {"name": "tinyconv", "tinyconv": {"width": 8}}
    meta = json.loads((out / "distill/seed0/depth/none/encoder.json").read_text())
    assert meta["components"]["backbone"] == {
        "name": "tinyconv",
        "package": DISTRIBUTION,
        "version": "0.1",
    }

    edit(site, "backbone")  # the students' backbone: they retrain; teacher and data stay
    log = _run(site, out)
    second = _units(out)
    assert _rewritten(first, second) == STUDENTS  # same weights: the probes' inputs are unchanged
    for unit in sorted(STUDENTS):
        assert f"{out / unit}: backbone 'tinyconv' changed (source digest); recomputing it" in log
    assert "teacher rgb supervised seed 0: cached" in log

    edit(site, "probe")  # the plugin's probe: its results alone are computed again
    log = _run(site, out)
    assert _rewritten(second, _units(out)) == NEAREST
    for unit in sorted(NEAREST):
        assert f"{out / unit}: probe 'nearest' changed (source digest); recomputing it" in log


# --- a real editable install (pip install -e) -------------------------------------------------

EDITABLE_PROBE = '''
"""A probe of an editable package."""


class EdProbe:
    """Always right."""

    options = None
    metrics = ("accuracy",)

    def __init__(self, config=None) -> None:
        self.config = config

    def evaluate(self, train, val, test, num_classes):
        return {"accuracy": 1.0}
'''

#: the identity of the editable package's probe, and the file it was imported from
_IDENTIFY = """
import json, site, sys
site.addsitedir(sys.argv[1])  # as a site folder: its editable .pth points at the source
from xmodal.core.identity import component_identity, source_file
from xmodal.core.registry import PROBES
found = component_identity("probes", "edprobe")
print(json.dumps({**found, "file": str(source_file(PROBES.get("edprobe")))}))
"""


def test_an_editable_install_is_identified_by_its_source_in_place(tmp_path):
    """``pip install -e``: the identity digests the project's own file, so an edit changes it.

    With the test above (a changed identity recomputes exactly the units that use it), this is
    the editable case of issue 21's Done-when item.
    """
    project, site = tmp_path / "project", tmp_path / "site"
    (project / "src" / "ed_pkg").mkdir(parents=True)
    (project / "src" / "ed_pkg" / "__init__.py").write_text("")
    source = project / "src" / "ed_pkg" / "probe.py"
    source.write_text(EDITABLE_PROBE)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '\n[project]\nname = "ed-demo"\nversion = "0.3"\n\n[tool.setuptools.packages.find]\n'
        'where = ["src"]\n\n[project.entry-points."xmodal.probes"]\n'
        'edprobe = "ed_pkg.probe:EdProbe"\n'
    )
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    proc = subprocess.run([*pip, "-e", str(project)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (site / "ed_pkg").exists()  # nothing copied: the source stays in the project

    def identify() -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", _IDENTIFY, str(site)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    before = identify()
    assert Path(before.pop("file")).resolve() == source.resolve()
    assert before == {
        "name": "edprobe",
        "package": "ed-demo",
        "version": "0.3",
        "source": file_digest(source),
    }
    source.write_text(source.read_text() + "# edited in place\n")
    after = identify()
    assert Path(after.pop("file")).resolve() == source.resolve()
    assert after["source"] != before["source"] and after["version"] == "0.3"
