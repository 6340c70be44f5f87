"""One writer per run directory, for every command that writes into one.

``run``, ``probe`` and ``report`` hold it; the temporary files of killed writers are removed when
the lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_scenes import TINY_DATA

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


#: a small probe: a fresh CIFAR ResNet-8 on a tiny scenes set, k-NN only
PROBE = [
    "probe",
    "resnet8",
    "--modality",
    "rgb",
    "--data",
    "scenes",
    "--probes",
    "knn",
    *(arg for item in TINY_DATA for arg in ("--set", item)),
]
#: ``xmodal ARGS`` that stops inside the probe stage (so holding its --out) until told to go on
PAUSED = (
    "import sys\n"
    "import xmodal.pipelines.stages.probe as stage\n"
    "from xmodal.cli.main import main\n"
    "real = stage.extract_features\n"
    "def paused(*args, **kwargs):\n"
    "    print('probing', flush=True)\n"
    "    sys.stdin.readline()\n"
    "    stage.extract_features = real\n"
    "    return real(*args, **kwargs)\n"
    "stage.extract_features = paused\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_a_second_job_into_a_probes_out_stops_with_the_line_run_gives(tmp_path):
    """Real processes: ``xmodal probe`` holds its --out as ``xmodal run`` holds its own.

    A second probe into it, and a run into it, stop with one and the same line, writing nothing.
    """
    out = tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED, *PROBE, "--out", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        said = []
        for line in first.stdout:  # the console's lines, then ours from inside the probe stage
            said.append(line)
            if line.strip() == "probing":
                break
        else:
            raise AssertionError(f"the first probe ended early: {said} {first.stderr.read()}")
        before = sorted(out.rglob("*"))
        others = [
            subprocess.Popen(
                [sys.executable, "-m", "xmodal", *argv, "--out", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for argv in (PROBE, ["run", "scenes"])
        ]
        errors = [job.communicate(timeout=300)[1].strip() for job in others]
        assert [job.returncode for job in others] == [2, 2], errors
        probe_line, run_line = errors
        assert "\n" not in probe_line
        assert probe_line.startswith(
            f"error: run directory '{out}' is in use by pid {first.pid} on host "
            f"{socket.gethostname()}"
        )
        assert probe_line == run_line
        assert sorted(out.rglob("*")) == before  # neither wrote anything
        first.stdin.write("go on\n")
        first.stdin.flush()
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} == {("rgb", "resnet8", "knn")}
    assert (out / "config.yaml").is_file()  # a run directory, as `xmodal run` leaves one
    assert (out / ".lock").read_text() == ""  # released


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
