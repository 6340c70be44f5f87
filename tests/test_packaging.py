"""Packaging: README commands match CI, data folders ship inside the wheel and are found there."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", quickstart, re.S)
    assert block, "README Quickstart has no code block"
    return [
        line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")
    ]


def test_readme_quickstart_has_two_commands_and_ci_runs_the_second():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "xmodal run scenes" in commands[0]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [commands[1]]


def test_constraints_pin_the_tested_torch_set():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert (pins["torch"], pins["torchvision"], pins["torchaudio"]) == ("2.9.1", "0.24.1", "2.9.1")


def test_wheel_carries_data_folders_and_finds_them(tmp_path):
    pytest.importorskip("hatchling")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("xmodal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("pipelines", "configs", "datasets"):
        shipped = {
            p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()
        }
        assert shipped, folder
        for rel in shipped:
            assert f"xmodal/_resources/{rel}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "from xmodal.core.registry import PIPELINES; "
        "from xmodal.core.resources import resource_root; s = PIPELINES.get('scenes'); "
        "print(resource_root('configs')); print(s.config_path())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(site / "xmodal" / "_resources" / "configs") in proc.stdout
