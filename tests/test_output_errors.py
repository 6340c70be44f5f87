"""A full disk while writing data.h5 or encoder.safetensors is one line naming the file.

The line gives the space it needs, and no temporary file is left (issue "nothing silently
wrong", round 2: T1, T3).
"""

from __future__ import annotations

import errno
from pathlib import Path

import h5py
import pytest
import torch
from tiny_scenes import TINY_DATA

from xmodal.cli.main import main
from xmodal.core.errors import OutputError
from xmodal.data.hdf5_output import hdf5_bytes, hdf5_writing
from xmodal.encoders.export import WEIGHTS_FILE, export_encoder

TINY = [
    *TINY_DATA,
]


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if ".tmp" in p.name]


def test_the_hdf5_estimate_leaves_a_margin():
    assert hdf5_bytes(100 << 20) >= (110 << 20) + (4 << 20)


def test_disk_full_while_writing_data_h5_is_one_line_and_leaves_no_temp(
    tmp_path, capsys, monkeypatch
):
    real = h5py.Dataset.__setitem__
    writes = []

    def fills_up(self, key, value):
        writes.append(key)
        if len(writes) > 2:  # some blocks written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", fills_up)
    run = tmp_path / "run"
    argv = ["run", "scenes", "--out", str(run)]
    for item in TINY:
        argv += ["--set", item]
    capsys.readouterr()
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("error: no space left to write '") and "data.h5" in line
    assert "needs about" in line and "MB" in line
    assert len(writes) == 3
    assert not _temps(run)
    assert not list(run.rglob("data.h5"))


def test_other_errors_in_an_hdf5_block_keep_their_traceback(tmp_path):
    with pytest.raises(RuntimeError, match="a bug"):
        with hdf5_writing(tmp_path / "data.h5", 1):
            raise RuntimeError("a bug")


class _Tiny(torch.nn.Module):
    modality, embed_dim = "rgb", 4

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "Error while serializing: I/O error: No space left on device (os error 28)",
            "error: no space left to write '{path}' (needs about",
        ),
        (
            "Error while serializing: I/O error: Input/output error (os error 5)",
            "error: cannot write '{path}' (safetensors: Error while serializing",
        ),
    ],
)
def test_a_failing_safetensors_save_is_one_line_naming_the_file(
    tmp_path, capsys, monkeypatch, message, expected
):
    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")  # got some way, then failed
        raise SafetensorError(message)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    directory = tmp_path / "export"
    with pytest.raises(OutputError) as caught:
        export_encoder(_Tiny(), directory, "mlp", {}, {})
    path = directory / WEIGHTS_FILE
    assert f"error: {caught.value}".startswith(expected.format(path=path))
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in directory.iterdir()) == []  # no half file, no temp


def test_an_export_still_writes_and_loads(tmp_path):
    from xmodal.encoders.export import read_export_metadata

    meta_path = export_encoder(_Tiny(), tmp_path / "export", "mlp", {}, {})
    assert read_export_metadata(meta_path)["embed_dim"] == 4
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["encoder.json", WEIGHTS_FILE]


def test_a_small_filesystem_is_refused_before_hdf5_writes(tmp_path, capsys):
    """3 MB free: the estimate with its margin refuses before writing.

    The arrays (about 1.7 MB) would fit the old estimate but leave HDF5 no room. Needs root to
    mount; skipped elsewhere.
    """
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        argv = ["run", "scenes", "--out", str(mount / "run")]
        for item in TINY:
            argv += ["--set", item]
        capsys.readouterr()
        assert main(argv) == 2
        line = _error_line(capsys)
        assert line.startswith("error: no space left to write '") and "data.h5" in line
        assert "needs about 6.1 MB" in line
        assert not _temps(mount)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _report_run(run: Path) -> Path:
    """The smallest run a report draws a figure for: one unit with a two-epoch history."""
    import json

    unit = run / "teacher"
    unit.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"config": {"seeds": [0]}, "summary": []}))
    (unit / "encoder.json").write_text(
        json.dumps({"modality": "rgb", "extra": {"role": "teacher", "method": "sup", "seed": 0}})
    )
    history = [{"loss": 2.0 - e, "lr": 0.1, "epoch": e} for e in (1, 2)]
    (unit / "history.json").write_text(json.dumps(history))
    return run


def test_a_full_disk_while_drawing_a_figure_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """The line names the report's PNG, not '.' nor a temporary name.

    The earlier figure stays whole, and no half PNG or temporary file is left.
    """
    from matplotlib.figure import Figure

    run = _report_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    png = run / "report" / "training-curves.png"
    before = png.read_bytes()
    assert before.startswith(b"\x89PNG")

    def fills_up(self, target, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")  # got some way, then the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", fills_up)
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: no space left to write '{png}' (needs about "), line
    assert png.read_bytes() == before
    assert not _temps(run)


def test_a_figure_is_refused_before_drawing_on_a_nearly_full_disk(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    import xmodal.core.cache as core_cache
    from xmodal.evaluation.figures import png_bytes, save_png

    fig = Figure(figsize=(4.0, 3.0), dpi=100)
    assert png_bytes(fig) == 400 * 300 * 4 + (64 << 10)  # raw RGBA: PNG never needs more here
    path = tmp_path / "figs" / "a.png"
    assert save_png(fig, path) == path and path.read_bytes().startswith(b"\x89PNG")
    assert path.stat().st_size < png_bytes(fig)
    monkeypatch.setattr(core_cache, "free_bytes", lambda where: 100_000)
    with pytest.raises(OutputError, match=r"no space left to write '.*b\.png' \(needs about 0\.5"):
        save_png(fig, tmp_path / "figs" / "b.png")
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]


def test_a_full_disk_while_copying_the_report_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import shutil

    run = _report_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    (run / "report" / "notes.txt").write_text("kept across rebuilds")

    def fills_up(source, target, **kwargs):
        Path(target).mkdir()
        reason = f"[Errno 28] No space left on device: '{target}/notes.txt'"
        raise shutil.Error([(f"{source}/notes.txt", f"{target}/notes.txt", reason)])

    monkeypatch.setattr(shutil, "copytree", fills_up)
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: no space left to write '{run / 'report'}' (needs about"), line
    assert not _temps(run)
    assert (run / "report" / "training-curves.png").is_file()
