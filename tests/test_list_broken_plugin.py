"""``xmodal list`` survives a broken plugin: its row says why, the rest are listed, exit 1.

An installed package declares two front ends: ``boom``, whose module raises when imported, and
``calm``, which works. Each command runs in a fresh process, as a user's does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from plugin_package import ROOT, run_xmodal, write_dist

from xmodal.core.registry import FRONTENDS

BOOM = """
raise RuntimeError("the boom module is broken on purpose")
"""

CALM = '''
from xmodal.encoders.frontends import DepthFrontend


class CalmFrontend(DepthFrontend):
    """Depth again, from another package."""
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_dist(
        tmp_path_factory.mktemp("site"),
        "boom-plugins",
        {"boom_plugin": BOOM, "calm_plugin": CALM},
        {"xmodal.frontends": {"boom": "boom_plugin:Boom", "calm": "calm_plugin:CalmFrontend"}},
    )


def _rows(stdout: str) -> dict[str, list[str]]:
    """``{name: [cells]}`` of the tables ``xmodal list`` printed."""
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in stdout.splitlines()
        if line.startswith("│ ")
    ]
    return {row[0]: row[1:] for row in rows}


def test_a_kind_with_a_broken_entry_lists_the_rest_and_exits_1(site, tmp_path):
    proc = run_xmodal(site, "list", "frontends", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rows = _rows(proc.stdout)
    assert set(rows) == {*FRONTENDS.names(), "boom", "calm"}
    assert rows["calm"] == ["Depth again, from another package.", "boom-plugins"]
    assert rows["rgb"][1] == "xmodal" and rows["rgb"][0]  # built-ins keep their descriptions
    description, package = rows["boom"]
    assert package == "boom-plugins"
    assert description == (
        "BROKEN: plugin 'boom' (boom_plugin:Boom) from package 'boom-plugins', entry-point "
        "group 'xmodal.frontends', failed to load: the boom module is broken on purpose; fix or "
        "uninstall that package"
    )
    assert proc.stderr.splitlines() == [
        "error: 1 entry failed to load: frontends:boom (package 'boom-plugins'); fix or "
        "uninstall the package (its row says why; 'xmodal check frontends:boom' runs its checks)"
    ]


def test_other_kinds_and_the_whole_list_are_untouched(site, tmp_path):
    proc = run_xmodal(site, "list", "probes", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "boom" not in proc.stdout and "linear" in _rows(proc.stdout)

    code = (
        "import sys\n"
        "from xmodal.cli.main import main\n"
        "status = main(['list'])\n"
        "print('TORCH', status, 'torch' in sys.modules)\n"
    )
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), str(ROOT)])
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "COLUMNS": "400"},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    listing, _, verdict = proc.stdout.rpartition("TORCH ")
    assert verdict.split() == ["0", "False"]  # every kind listed, nothing imported
    rows = _rows(listing)
    assert rows["boom"] == ["boom-plugins"] and rows["calm"] == ["boom-plugins"]
    assert rows["wcord"] == ["xmodal"]
