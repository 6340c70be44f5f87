"""``examples/xmodal-imu``, pip-installed as a user installs it, works end to end.

``xmodal check`` passes, its own test suite passes through ``xmodal.testing``, an IMU student
on the ``sequence`` layout trains and is probed, and ``pointnet`` is refused for the IMU input
when the config loads. Each command is a fresh process, as a user's is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from plugin_package import pip_install

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "xmodal-imu"
COMPONENTS = {
    "imu": "frontends",
    "imu-cnn": "backbones",
    "sp": "methods",
    "nearest-centroid": "probes",
    "imu-synth": "datasets",
}
TINY = [
    "data.name=imu-synth",
    "data.imu_synth.per_class=6",
    "data.imu_synth.steps=32",
    "teacher.modality=rgb",
    "teacher.optim.epochs=1",
    "teacher.optim.batch_size=9",
    "distill.optim.epochs=2",
    "distill.optim.batch_size=9",
    "distill.students=[imu]",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(site folder for PYTHONPATH, a copy of the example's source folder)."""
    source = tmp_path_factory.mktemp("example") / "xmodal-imu"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    return pip_install(source, tmp_path_factory.mktemp("site")), source


def _run(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "400",  # rich tables on one line per row
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_xmodal_check_passes_every_component(installed):
    site, _ = installed
    proc = _run(site, "-m", "xmodal", "check", "xmodal-imu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in proc.stdout.splitlines()]
    rows = [r for r in rows if len(r) == 6 and r[0] in COMPONENTS]
    assert {(r[0], r[1]) for r in rows} == {(n, k) for n, k in COMPONENTS.items()}
    assert {r[2] for r in rows} == {"xmodal-imu"} and {r[4] for r in rows} == {"ok"}
    assert {r[3] for r in rows if r[0] == "imu-cnn"} == {
        "options",
        "contract",
        "forward",
        "encoder",
    }
    assert "prepare+load" in {r[3] for r in rows if r[0] == "imu-synth"}  # its example_options
    assert f"all {len(rows)} checks of 5 components passed" in proc.stdout


def test_its_own_test_suite_passes_through_xmodal_testing(installed):
    site, source = installed
    proc = _run(site, "-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=source)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for check in ("frontends:imu:forward", "backbones:imu-cnn:forward", "methods:sp:train step"):
        assert f"test_contract[{check}] PASSED" in proc.stdout
    assert " failed" not in proc.stdout


def test_a_run_with_an_imu_student_on_the_sequence_layout_writes_results(installed, tmp_path):
    site, _ = installed
    out = tmp_path / "run"
    sets = [
        *TINY,
        "distill.methods=[none,sp]",
        "distill.sp.weight=2",
        "distill.encoders.imu={name: imu-cnn, imu_cnn: {width: 8}}",
        "frontends.imu.clip=4",
        "probe.probes=[nearest-centroid,linear]",
        "probe.nearest_centroid.metric=euclidean",
        "probe.linear.l2_grid=[0.001]",
        "probe.linear.max_iter=20",
    ]
    args = ["-m", "xmodal", "run", "paired", "--out", str(out)]
    proc = _run(site, *args, *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} == {
        (modality, method, probe)
        for modality, method in (("rgb", "teacher"), ("imu", "none"), ("imu", "sp"))
        for probe in ("nearest-centroid", "linear")
    }
    assert all(0 <= r["value"] <= 1 for r in rows)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["frontends"]["imu"] == {"clip": 4.0}
    assert config["distill"]["sp"] == {"weight": 2.0}
    assert config["probe"]["nearest_centroid"] == {"metric": "euclidean"}
    assert config["data"]["imu_synth"] == {"per_class": 6, "steps": 32, "seed": 0}
    meta = json.loads((out / "distill/seed0/imu/sp/encoder.json").read_text())
    assert (meta["backbone"], meta["backbone_options"], meta["embed_dim"]) == (
        "imu-cnn",
        {"width": 8},
        16,
    )
    assert meta["frontend_options"] == {"clip": 4.0}


def test_pointnet_refuses_the_imu_input_when_the_config_loads(installed, tmp_path):
    site, _ = installed
    out = tmp_path / "run"
    sets = [*TINY, "distill.encoders.imu={name: pointnet}"]
    args = ["-m", "xmodal", "run", "paired", "--out", str(out)]
    proc = _run(site, *args, *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        "error: distill.encoders.imu: backbone 'pointnet' takes points input [B, C, N], but "
        "modality 'imu' gives sequence input [B, C, T]; choose another with "
        "--set distill.encoders.imu.name=NAME"
    )
    assert not out.exists()
