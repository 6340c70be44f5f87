"""One writer per run directory for every command that writes into one (``run``, ``probe``,
``report``), and the temporary files of killed writers removed when the lock is taken.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.cli.main import main
from xmodal.core.lock import RunLock

REPO = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys, time\n"
    "from xmodal.core.lock import RunLock\n"
    "with RunLock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


@pytest.fixture
def held(tmp_path):
    """A run directory held by another process (as a running ``xmodal run`` holds it)."""
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield run, holder.pid
    finally:
        holder.kill()
        holder.wait()


def _one_line(capsys, run: Path, pid: int) -> None:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        f"error: run directory '{run}' is in use by pid {pid} on host {socket.gethostname()}"
    )


def test_probe_into_a_held_directory_stops_at_once(held, tmp_path, capsys):
    run, pid = held
    target = tmp_path / "target"  # an existing directory: the lock comes before any export is read
    target.mkdir()
    assert main(["probe", str(target), "--out", str(run)]) == 2
    _one_line(capsys, run, pid)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing prepared or written


def test_report_of_a_held_run_stops_at_once(held, capsys):
    run, pid = held
    assert main(["report", str(run)]) == 2
    _one_line(capsys, run, pid)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_taking_the_lock_removes_only_the_temp_files_of_dead_writers(tmp_path):
    run = tmp_path / "run"
    dead, live = _dead_pid(), os.getpid()
    cache = run / "data" / "scenes"
    cache.mkdir(parents=True)
    stale = [
        cache / f".data.h5.tmp{dead}-0123abcd",  # atomic_output's name
        run / "export" / f".encoder.safetensors.tmp{dead}",  # the export writer's name
        run / f".report.tmp{dead}-89abcdef",
    ]  # a figures folder being built
    stale[1].parent.mkdir()
    stale[0].write_bytes(b"half an HDF5 file")
    stale[1].write_bytes(b"half the weights")
    stale[2].mkdir()
    (stale[2] / "curve.png").write_bytes(b"png")
    kept = [
        cache / f".data.h5.tmp{live}-0123abcd",  # a live writer's
        cache / "data.h5.part",  # a resumable cache: not a temp
        run / f"notes.tmp{dead}",  # not hidden: not one of ours
        run / f".x.tmp{dead}-NOTHEX12",  # not the exact pattern
        run / "results.json",
    ]
    for path in kept:
        path.write_bytes(b"x")
    with RunLock(run) as lock:
        assert sorted(lock.removed) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
