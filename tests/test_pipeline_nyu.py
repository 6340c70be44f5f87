"""``xmodal run nyu-depth`` on a small file in the real v7.3 layout, and the resumable cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision

from xmodal.cli.main import main
from xmodal.data.nyu.cache import build_cache
from xmodal.data.nyu.config import NYUDepthOptions

sys.path.insert(0, str(Path(__file__).parent))
from nyu_fixtures import write_nyu_labeled  # noqa: E402

FRAMES = 24  # official split: 15 train (2 held out for val), 9 test among frames 0..23


@pytest.fixture(scope="module")
def nyu_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    write_nyu_labeled(path, frames=FRAMES)
    return path


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _torchvision_teacher(weights: Path) -> str:
    """The whole teacher.encoder replaced: the default's timm options do not apply to resnet18.

    The default timm teacher runs in tests/test_nyu_teacher.py.
    """
    return f"teacher.encoder={{name: resnet18, resnet18: {{pretrained: '{weights}'}}}}"


def test_run_nyu_depth_end_to_end(nyu_file, teacher_weights, tmp_path):
    sets = [
        "data.nyu_depth.image_size=[24,32]",
        _torchvision_teacher(teacher_weights),
        "distill.encoder.name=resnet8",
        "distill.methods=[none,wcord]",
        "distill.optim.epochs=1",
        "distill.optim.batch_size=4",
        "distill.wcord.num_negatives=8",
        "probe.linear.l2_grid=[0.01]",
        "probe.linear.max_iter=20",
        "probe.segmentation.epochs=1",
        "probe.segmentation.weight_decay_grid=[0.0]",
    ]
    argv = ["run", "nyu-depth", "--out", str(tmp_path), "--data", str(nyu_file)]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    got = {(r["modality"], r["method"], r["probe"], r["metric"]) for r in rows}
    for method in ("none", "wcord"):
        assert ("hha", method, "linear", "accuracy") in got
        for seg in ("seg40", "seg13"):
            assert ("hha", method, seg, "mean_iou") in got
            assert ("hha", method, seg, "pixel_accuracy") in got
    assert ("rgb", "teacher", "linear", "accuracy") in got
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)


def test_fine_tuned_teacher_gives_logits_for_kd(nyu_file, teacher_weights, tmp_path):
    sets = [
        "data.nyu_depth.image_size=[24,32]",
        "data.nyu_depth.normals=gradient",
        _torchvision_teacher(teacher_weights),
        "teacher.optim.epochs=1",
        "teacher.optim.batch_size=4",
        "distill.encoder.name=resnet8",
        "distill.methods=[kd]",
        "distill.optim.epochs=1",
        "distill.optim.batch_size=4",
        "probe.probes=[linear]",
        "probe.linear.l2_grid=[0.01]",
        "probe.linear.max_iter=20",
    ]
    argv = ["run", "nyu-depth", "--out", str(tmp_path), "--data", str(nyu_file)]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    outputs = list((tmp_path / "teacher").rglob("outputs-*.pt"))
    assert len(outputs) == 1
    saved = torch.load(outputs[0], weights_only=True)["value"]  # a keyed cache entry
    assert saved["logits"].shape[1] == 10  # the 10 NYU scene classes
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["modality"], r["method"]) for r in rows} == {("rgb", "teacher"), ("hha", "kd")}


def test_missing_data_says_where_to_get_it(tmp_path, capsys):
    # a random-init teacher (weights ''): the default's weights folder is checked first
    assert (
        main(["run", "nyu-depth", "--out", str(tmp_path), "--set", "teacher.encoder.timm.weights="])
        == 2
    )
    err = capsys.readouterr().err
    assert "--data PATH" in err and "xmodal data download nyu-depth" in err


def test_interrupted_preprocessing_resumes_to_an_identical_cache(nyu_file, tmp_path):
    config = NYUDepthOptions(path=str(nyu_file), image_size=[24, 32], normals="gradient")
    whole = build_cache(config, tmp_path / "whole.h5")

    def stop_half_way(done, total):
        if done == FRAMES // 2:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        build_cache(config, resumed, progress=stop_half_way)
    assert not resumed.exists() and resumed.with_name("resumed.h5.part").exists()
    seen = []
    build_cache(config, resumed, progress=lambda done, total: seen.append(done))
    assert seen[0] == FRAMES // 2 + 1  # continued after the last finished frame
    with h5py.File(whole) as a, h5py.File(resumed) as b:
        for key in ("rgb", "depth", "hha", "labels40", "scene10", "split"):
            assert np.array_equal(a[key][()], b[key][()]), key
    stamp = resumed.stat().st_mtime_ns
    build_cache(config, resumed)  # finished cache with the same manifest: reused
    assert resumed.stat().st_mtime_ns == stamp


def test_cache_contents_follow_the_facts(nyu_file, tmp_path):
    from xmodal.data.nyu.facts import load_nyu_facts

    facts = load_nyu_facts()
    path = build_cache(NYUDepthOptions(path=str(nyu_file), image_size=[24, 32]), tmp_path / "c.h5")
    with h5py.File(path) as f:
        split = f["split"][()]
        assert f["rgb"].shape == (FRAMES, 24, 32, 3) and f["hha"].dtype == np.uint8
        train = {i for i in facts.train_indices.tolist() if i < FRAMES}
        assert {i for i in range(FRAMES) if split[i] in (0, 1)} == train
        assert (split == 1).sum() >= 1
        assert f["labels40"][()].max() <= 40
        depth = f["depth"][()]
        assert np.isfinite(depth).all() and (depth >= 0).all()
        normals = f["normals"][()].astype(np.float32) / 127
        length = np.linalg.norm(normals, axis=-1)
        known = length > 0
        assert known.mean() > 0.9 and np.allclose(length[known], 1, atol=0.02)
        # facing the camera: the ray to every pixel and its normal point opposite ways
        fx, fy, cx, cy = facts.intrinsics
        top, bottom, left, right = facts.valid_crop
        sy, sx = 24 / (bottom - top + 1), 32 / (right - left + 1)
        v, u = np.mgrid[0:24, 0:32]
        rays = np.stack(
            [
                ((u + 0.5) / sx - 0.5 + left - cx) / fx,
                ((v + 0.5) / sy - 0.5 + top - cy) / fy,
                np.ones((24, 32)),
            ],
            -1,
        )
        assert ((normals * rays).sum(-1)[known] < 0).mean() > 0.95
        height = f["height"][()]
        # metres above the floor, taken as the 1st percentile of heights: ~1 % lie below it
        assert np.isfinite(height).all() and (height < 0).mean() <= 0.02


RSS_PROBE = """
import sys
from pathlib import Path
from xmodal.data.nyu.cache import build_cache
from xmodal.data.nyu.config import NYUDepthOptions

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

config = NYUDepthOptions(path=sys.argv[1], image_size=[24, 32], normals="gradient")
marks = []
build_cache(config, Path(sys.argv[2]), progress=lambda done, total: marks.append(resident_mb()))
print(marks[3], marks[-1])
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_preprocessing_memory_stays_flat_frame_after_frame(nyu_file, tmp_path):
    # Without handing freed heap back (xmodal.core.heap), glibc fragmentation grew the
    # resident size by ~9 MB per full-resolution frame: ~180 MB over these 20 frames.
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(nyu_file), str(tmp_path / "c.h5")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    early, late = float(out[0]), float(out[1])
    assert late - early < 60, f"resident memory grew {late - early:.0f} MB over {FRAMES - 4} frames"


KILL_PROBE = """
import os, signal, sys
from pathlib import Path
from xmodal.data.nyu.cache import build_cache
from xmodal.data.nyu.config import NYUDepthOptions

def die(done, total):
    if done == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no file close: a real crash

config = NYUDepthOptions(path=sys.argv[1], image_size=[24, 32], normals="gradient")
build_cache(config, Path(sys.argv[2]), progress=die)
"""


def test_preprocessing_killed_half_way_resumes_to_an_identical_cache(nyu_file, tmp_path):
    import subprocess

    config = NYUDepthOptions(path=str(nyu_file), image_size=[24, 32], normals="gradient")
    whole = build_cache(config, tmp_path / "whole.h5")
    killed = tmp_path / "killed.h5"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_PROBE, str(nyu_file), str(killed), str(FRAMES // 2)],
        capture_output=True,
    )
    assert proc.returncode == -9 and not killed.exists()
    seen = []
    build_cache(config, killed, progress=lambda done, total: seen.append(done))
    assert seen[0] == FRAMES // 2 + 1
    with h5py.File(whole) as a, h5py.File(killed) as b:
        assert sorted(a) == sorted(b)
        for key in a:
            assert np.array_equal(a[key][()], b[key][()]), key
