"""End to end: ``xmodal run cifar100 --data DIR`` on a tiny folder in the official format.

That is CIFAR-100's: pickled ``train``/``test``/``meta`` under ``cifar-100-python/``, read by
torchvision.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from xmodal.cli.main import main
from xmodal.core.errors import DataError
from xmodal.data.cifar100_source import CIFAR100Options, CIFAR100Source

TINY = [
    "data.cifar100.download=false",
    "data.cifar100.verify_md5=false",
    "teacher.encoder.name=resnet8x4",
    "teacher.optim.epochs=2",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=32",
    "distill.optim.batch_size=32",
    "teacher.optim.milestones=[1]",
    "distill.optim.milestones=[1]",
    "distill.crd.num_negatives=40",
    "distill.wcord.num_negatives=40",
    "distill.wcord.embed_dim=16",
    "distill.crd.embed_dim=16",
]


def _write_cifar(root, n_train=96, n_test=40, classes=6, seed=0):
    """The official layout; class c has a distinct mean colour so a tiny net can learn it."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n)
        base = (labels[:, None] * 40 + 20).astype(np.int64)
        data = np.clip(base + rng.integers(-20, 20, (n, 3072)), 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "data": data,
                    "fine_labels": labels.tolist(),
                    "coarse_labels": (labels // 5).tolist(),
                },
                f,
            )
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {
                "fine_label_names": [f"class{i}" for i in range(100)],
                "coarse_label_names": [f"super{i}" for i in range(20)],
            },
            f,
        )
    return root


def test_reader_matches_the_pickled_arrays(tmp_path):
    root = _write_cifar(tmp_path / "cifar")
    options = CIFAR100Options(path=str(root), download=False, verify_md5=False)
    loaded = CIFAR100Source().load(CIFAR100Source().prepare(options, tmp_path / "cache.h5"))
    with open(root / "cifar-100-python" / "test", "rb") as f:
        raw = pickle.load(f)
    images = loaded.splits["test"].column("rgb")
    assert images.shape == (40, 32, 32, 3) and loaded.num_classes == 100
    # CHW rows of 3072 bytes -> HWC: pixel (y, x) of channel c is data[c * 1024 + y * 32 + x].
    assert int(images[3, 5, 7, 2]) == int(raw["data"][3, 2 * 1024 + 5 * 32 + 7])
    assert loaded.splits["test"].column("label").tolist() == raw["fine_labels"]
    with pytest.raises(DataError, match="cifar-100-python"):  # the real MD5 sums reject it
        CIFAR100Source().prepare(CIFAR100Options(path=str(root), download=False), tmp_path / "x.h5")


def test_run_cifar100_end_to_end_gives_top1_rows(tmp_path):
    root = _write_cifar(tmp_path / "cifar")
    out = tmp_path / "run"
    argv = ["run", "cifar100", "--data", str(root), "--out", str(out)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["probe"], r["metric"]) for r in rows} == {
        (m, "classifier", "top1") for m in ("teacher", "supervised", "kd", "crd", "wcord")
    }
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    wcord = next(r for r in rows if r["method"] == "wcord")
    assert wcord["hparams"]["alpha"] == 1.0 and wcord["hparams"]["beta"] == 0.0
    crd = next(r for r in rows if r["method"] == "crd")
    assert crd["hparams"]["negatives"] == "other_class" and crd["hparams"]["replacement"] is False
    teacher = next(r for r in rows if r["method"] == "teacher")
    assert teacher["value"] > 0.3  # 6 separable colours, chance 1/6: the pipeline really trains

    # A teacher loaded from the first run's folder: no teacher training, same teacher rows.
    again = tmp_path / "again"
    argv = [
        "run",
        "cifar100",
        "--data",
        str(root),
        "--out",
        str(again),
        "--set",
        f"teacher.checkpoint={out / 'teacher' / 'seed0'}",
        "--set",
        "distill.methods=[kd]",
    ]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    rows2 = json.loads((again / "results.json").read_text())
    assert not (again / "teacher" / "seed0" / "encoder.pt").exists()
    assert next(r for r in rows2 if r["method"] == "teacher")["value"] == teacher["value"]
    assert {r["method"] for r in rows2} == {"teacher", "kd"}


def test_the_cache_is_written_like_data_h5_space_checked_one_line_no_temp(tmp_path, monkeypatch):
    """The cifar100 cache is written as data.h5 is.

    A unique temporary name (two writers never share one), free space checked against the
    arrays plus HDF5's margin before writing, and a disk that fills while writing is one line
    naming the cache; neither leaves a temporary file.
    """
    import errno

    import h5py

    import xmodal.core.cache as core_cache
    from xmodal.core.errors import OutputError
    from xmodal.data.hdf5_output import hdf5_bytes

    root = _write_cifar(tmp_path / "cifar", n_train=20, n_test=10)
    options = CIFAR100Options(path=str(root), download=False, verify_md5=False)
    cache = tmp_path / "data" / "cache.h5"
    arrays = 30 * 32 * 32 * 3 + 30 * 8 + len(json.dumps([f"class{i}" for i in range(100)]))
    free = hdf5_bytes(arrays) - 1
    monkeypatch.setattr(core_cache, "free_bytes", lambda path: free)
    with pytest.raises(OutputError) as caught:
        CIFAR100Source().prepare(options, cache)
    needed = f"needs about {hdf5_bytes(arrays) / 1e6:.1f} MB, {free / 1e6:.1f} MB free"
    assert str(caught.value).startswith(f"no space left to write '{cache}' ({needed}")
    assert list(cache.parent.iterdir()) == []

    monkeypatch.setattr(core_cache, "free_bytes", lambda path: 1 << 40)
    names = []
    real = h5py.File

    def fills_up(name, mode="r", **kwargs):
        if mode == "w":
            names.append(Path(name).name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, mode, **kwargs)

    monkeypatch.setattr(h5py, "File", fills_up)
    with pytest.raises(OutputError, match=f"no space left to write '{cache}'"):
        CIFAR100Source().prepare(options, cache)
    assert names[0].startswith(".cache.h5.tmp") and names[0] != ".cache.h5.tmp"
    assert list(cache.parent.iterdir()) == []
    monkeypatch.setattr(h5py, "File", real)
    loaded = CIFAR100Source().load(CIFAR100Source().prepare(options, cache))
    assert loaded.splits["train"].column("label").shape == (20,)
    assert [p.name for p in cache.parent.iterdir()] == ["cache.h5"]
