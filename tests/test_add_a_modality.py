"""``docs/add-a-modality.md``, followed literally.

Its files are written from the page's code blocks and its commands run as printed (plus settings
that make the run tiny). The package is built and installed by pip; the second half registers
the front end in code instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.io import write_png

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "add-a-modality.md"
CLASSES = ("kitchen", "office", "lab")
TINY = [
    "data.paired.image_size=[16,16]",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=2",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
    "distill.methods=[none,wcord]",
    "distill.wcord.num_negatives=16",
    "probe.probes=[linear]",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def _blocks(kind: str) -> dict[str, str]:
    """``{name: text}`` of the page's code blocks marked ``<!-- kind: name -->``."""
    pattern = re.compile(rf"<!-- {kind}: (\S+) -->\n```[a-z]*\n(.*?)```", re.DOTALL)
    return dict(pattern.findall(PAGE.read_text()))


def _recordings(folder: Path, rows: int = 48) -> Path:
    """RGB frames and thermal ``.npy`` kelvin maps whose class shows in both."""
    g = torch.Generator().manual_seed(0)
    (folder / "frames").mkdir(parents=True)
    (folder / "thermal").mkdir()
    lines = ["rgb,thermal,label"]
    for i in range(rows):
        c = i % len(CLASSES)
        rgb = torch.randint(0, 60, (3, 16, 16), generator=g, dtype=torch.uint8)
        rgb[c] += 150  # the class is the dominant colour
        write_png(rgb, str(folder / "frames" / f"{i:04d}.png"))
        kelvin = 290.0 + 6.0 * c + torch.randn(16, 16, generator=g)
        kelvin[:, : 4 * (c + 1)] += 5.0  # and a warm band whose width is the class
        np.save(folder / "thermal" / f"{i:04d}.npy", kelvin.numpy().astype(np.float32))
        lines.append(f"frames/{i:04d}.png,thermal/{i:04d}.npy,{CLASSES[c]}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def _run(command: str, cwd: Path, pythonpath: list[Path], out: Path) -> subprocess.CompletedProcess:
    argv = command.split()
    assert argv[0] == "xmodal"
    argv = [sys.executable, "-m", "xmodal", *argv[1:], "--out", str(out)]
    for item in TINY:
        argv += ["--set", item]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [*map(str, pythonpath), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


def _thermal_rows(out: Path) -> set[tuple[str, str, str]]:
    rows = json.loads((out / "results.json").read_text())
    return {(r["modality"], r["method"], r["probe"]) for r in rows}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    files = _blocks("file")
    assert {
        "thermal-xmodal/thermal_xmodal/__init__.py",
        "thermal-xmodal/pyproject.toml",
        "my_thermal.py",
    } <= set(files)
    frontend = files["thermal-xmodal/thermal_xmodal/__init__.py"]
    assert len([line for line in frontend.splitlines() if line.strip()]) < 50  # the page's promise
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _recordings(root / "recordings")
    return root, _blocks("command")


def test_the_pip_installed_plugin_is_distilled_from_rgb(workspace):
    root, commands = workspace
    site = root / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(root / "thermal-xmodal"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert list(site.glob("thermal_xmodal-0.1.0.dist-info"))
    proc = _run(commands["run"], root, [site], root / "run")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _thermal_rows(root / "run") >= {
        ("thermal", "none", "linear"),
        ("thermal", "wcord", "linear"),
        ("rgb", "teacher", "linear"),
    }
    config = yaml.safe_load((root / "run" / "config.yaml").read_text())
    assert config["frontends"]["thermal"] == {"room_k": 293.0, "spread_k": 8.0}
    assert (root / "run" / "distill/seed0/thermal/wcord/encoder.safetensors").is_file()


def test_the_same_front_end_registered_in_code_from_a_module_named_in_the_config(
    workspace, tmp_path
):
    root, commands = workspace
    code = tmp_path / "code"  # the package's folder and my_thermal.py, no entry points
    shutil.copytree(root / "thermal-xmodal" / "thermal_xmodal", code / "thermal_xmodal")
    shutil.copy(root / "my_thermal.py", code / "my_thermal.py")
    proc = _run(commands["run-in-code"], root, [code], tmp_path / "run")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ("thermal", "wcord", "linear") in _thermal_rows(tmp_path / "run")
    missing = _run(commands["run-in-code"], root, [], tmp_path / "run2")  # module not on the path
    assert missing.returncode == 2 and "plugins[0]: cannot import 'my_thermal'" in missing.stderr
