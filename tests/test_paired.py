"""The ``paired`` dataset, from its readers to a tiny ``xmodal run paired``.

Readers against independent expectations, manifests in CSV and JSONL, seeded splits, one test
per kind of bad data (with its row and column), skip mode, a resumed conversion, the load-time
checks for unlabelled manifests, ``xmodal data info`` and a tiny ``xmodal run paired`` end to
end.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import write_png

from xmodal.cli.main import main
from xmodal.core.errors import ConfigError, DataError
from xmodal.data.paired import PairedOptions, read_manifest
from xmodal.data.paired import cache as paired_cache
from xmodal.data.paired.readers import read_audio, read_depth, read_points, read_rgb
from xmodal.data.paired.splits import assign_splits
from xmodal.data.paired_source import PairedSource
from xmodal.pipelines.runner import resolve_config

CLASSES = ("red", "green", "blue")
RATE = 8000


# ----------------------------------------------------------------------------- file writers


def _png(path: Path, image: np.ndarray) -> None:
    """``[H, W, C]`` uint8 (C = 1 or 3) -> PNG through torchvision."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    write_png(tensor, str(path))


def _depth_png(path: Path, millimetres: np.ndarray) -> None:
    Image.fromarray(millimetres.astype(np.uint16)).save(path)  # mode I;16: a 16-bit PNG


def _wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """``[T]`` or ``[T, C]`` floats in [-1, 1] -> 16-bit PCM WAV (standard library)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(frames.shape[1])
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(np.round(frames * 32767).astype("<i2").tobytes())


def _ply(path: Path, points: np.ndarray) -> None:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(points)
    assert o3d.io.write_point_cloud(str(path), cloud)


def _tone(cls: int, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return 0.5 * np.sin(2 * np.pi * (300 + 500 * cls) * t)


def _dataset(
    folder: Path,
    n: int,
    *,
    labels: bool = True,
    split: bool = False,
    fmt: str = "csv",
    extra: dict[int, dict[str, str]] | None = None,
) -> Path:
    """Write ``n`` rows of 16x16 RGB PNG, 16-bit depth PNG and WAV; return the manifest.

    Each RGB image is a class colour plus noise; rows in ``extra`` get those cells instead (bad
    data).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cls = i % 3
        image = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        image[..., cls] += 180
        _png(folder / f"{i}.png", image)
        _depth_png(folder / f"{i}-depth.png", np.full((16, 16), 1000 + 500 * cls))
        _wav(folder / f"{i}.wav", _tone(cls) + 0.05 * rng.standard_normal(round(0.25 * RATE)), RATE)
        row = {"id": f"s{i}", "rgb": f"{i}.png", "depth": f"{i}-depth.png", "audio": f"{i}.wav"}
        if labels:
            row["label"] = CLASSES[cls]
        if split:
            row["split"] = ("train", "train", "val", "test")[i % 4]
        row.update((extra or {}).get(i, {}))
        rows.append(row)
    columns = list(rows[0])
    if fmt == "csv":
        lines = [",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in rows]
        path = folder / "manifest.csv"
        path.write_text("\n".join(lines) + "\n")
    else:
        path = folder / "manifest.jsonl"
        path.write_text(
            "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows)
        )
    return path


def _options(manifest: Path, **changes) -> PairedOptions:
    return PairedOptions(
        path=str(manifest), image_size=[16, 16], sample_rate=RATE, audio_seconds=0.25, **changes
    )


def _problems(manifest: Path, **changes) -> str:
    """The message of the DataError that stops preparation."""
    with pytest.raises(DataError) as caught:
        PairedSource().prepare(_options(manifest, **changes), manifest.parent / "cache.h5")
    return str(caught.value)


# ----------------------------------------------------------------------------- readers


def test_rgb_png_is_read_exactly_and_resized(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", image)
    same = read_rgb(tmp_path / "a.png", PairedOptions(image_size=[16, 12]))
    assert same.dtype == np.uint8 and np.array_equal(same, image)
    flat = np.full((16, 16, 3), (10, 120, 250), np.uint8)  # a flat colour stays that colour
    _png(tmp_path / "flat.png", flat)
    small = read_rgb(tmp_path / "flat.png", PairedOptions(image_size=[8, 4]))
    assert small.shape == (8, 4, 3) and (small == (10, 120, 250)).all()


def test_depth_png_in_millimetres_reads_metres(tmp_path):
    millimetres = np.full((8, 8), 1500)
    millimetres[:4, :4] = 0  # a hole: no depth
    _depth_png(tmp_path / "d.png", millimetres)
    depth = read_depth(tmp_path / "d.png", PairedOptions(image_size=[8, 8]))
    assert depth.dtype == np.float32 and depth.shape == (8, 8)
    assert depth[7, 7] == pytest.approx(1.5) and depth[0, 0] == 0
    half = read_depth(tmp_path / "d.png", PairedOptions(image_size=[4, 4]))
    assert half[3, 3] == pytest.approx(1.5) and half[0, 0] == 0  # holes do not pull depth to 0
    assert read_depth(tmp_path / "d.png", PairedOptions(image_size=[8, 8], depth_scale=5000))[
        7, 7
    ] == pytest.approx(0.3)
    np.save(tmp_path / "d.npy", np.full((8, 8), 2.25, np.float32))  # .npy is in metres already
    assert (read_depth(tmp_path / "d.npy", PairedOptions(image_size=[8, 8])) == 2.25).all()


def test_wav_is_resampled_mixed_to_mono_cropped_and_padded(tmp_path):
    t = np.arange(16000) / 16000  # 1 s of a 200 Hz tone at 16 kHz
    tone = 0.5 * np.sin(2 * np.pi * 200 * t)
    _wav(tmp_path / "a.wav", tone, 16000)
    audio = read_audio(tmp_path / "a.wav", PairedOptions(sample_rate=8000, audio_seconds=1.0))
    assert audio.dtype == np.float32 and audio.shape == (8000,)  # half the samples at 8 kHz
    expected = 0.5 * np.sin(2 * np.pi * 200 * np.arange(8000) / 8000)
    assert np.abs(audio[100:-100] - expected[100:-100]).max() < 0.01
    cropped = read_audio(tmp_path / "a.wav", PairedOptions(sample_rate=8000, audio_seconds=0.25))
    assert np.array_equal(cropped, audio[:2000])
    padded = read_audio(tmp_path / "a.wav", PairedOptions(sample_rate=8000, audio_seconds=1.5))
    assert padded.shape == (12000,) and np.array_equal(padded[:8000], audio)
    assert not padded[8000:].any()
    _wav(tmp_path / "stereo.wav", np.stack([tone, -tone], 1), 16000)  # channels cancel
    assert (
        np.abs(read_audio(tmp_path / "stereo.wav", PairedOptions(sample_rate=16000))).max() < 1e-4
    )


def test_ply_points_are_sampled_with_a_seed(tmp_path):
    points = np.random.default_rng(2).normal(size=(100, 3))
    _ply(tmp_path / "a.ply", points)
    options = PairedOptions(num_points=32, seed=3)
    sampled = read_points(tmp_path / "a.ply", options, row=1)
    assert sampled.shape == (32, 3) and sampled.dtype == np.float32
    distance = np.abs(sampled[:, None].astype(np.float64) - points[None]).max(-1).min(1)
    assert (distance < 1e-6).all() and len(np.unique(sampled, axis=0)) == 32  # no repeats
    assert np.array_equal(sampled, read_points(tmp_path / "a.ply", options, row=1))
    assert not np.array_equal(sampled, read_points(tmp_path / "a.ply", options, row=2))
    _ply(tmp_path / "few.ply", points[:10])  # fewer than asked: all of them, then repeats
    few = read_points(tmp_path / "few.ply", options, row=1)
    assert len(np.unique(few, axis=0)) == 10


# ----------------------------------------------------------------------------- manifests


def test_csv_and_jsonl_manifests_give_the_same_dataset(tmp_path):
    loaded = []
    for fmt in ("csv", "jsonl"):
        manifest = _dataset(tmp_path / fmt, 12, fmt=fmt)
        source = PairedSource()
        cache = source.prepare(_options(manifest), tmp_path / fmt / "cache.h5")
        loaded.append(source.load(cache))
        assert source.modalities_for(_options(manifest)) == ("rgb", "depth", "audio")
    csv, jsonl = loaded
    assert csv.class_names == jsonl.class_names == sorted(CLASSES)
    assert csv.frontend_kwargs == {"audio": {"sample_rate": RATE}}
    for split in ("train", "val", "test"):
        a, b = (
            {k: d.splits[split].column(k) for k in d.splits[split].keys()} for d in (csv, jsonl)
        )
        assert set(a) == set(b) == {"rgb", "depth", "audio", "label", "row"}
        assert all(torch.equal(a[k], b[k]) for k in a)
    train = {k: csv.splits["train"].column(k) for k in csv.splits["train"].keys()}
    rows = train["row"].tolist()
    assert train["label"].tolist() == [sorted(CLASSES).index(CLASSES[(r - 1) % 3]) for r in rows]
    assert train["depth"][0].unique().tolist() == [pytest.approx(1.0 + 0.5 * ((rows[0] - 1) % 3))]


def test_seeded_splits_are_deterministic_and_disjoint(tmp_path):
    manifest = read_manifest(_dataset(tmp_path, 40))
    first, problems = assign_splits(manifest, 0.1, 0.2, seed=0)
    again, _ = assign_splits(manifest, 0.1, 0.2, seed=0)
    other, _ = assign_splits(manifest, 0.1, 0.2, seed=1)
    assert first == again and first != other and not problems
    rows = {s: {i for i, split in enumerate(first) if split == s} for s in ("train", "val", "test")}
    assert (len(rows["train"]), len(rows["val"]), len(rows["test"])) == (28, 4, 8)
    assert set().union(*rows.values()) == set(range(40))  # every row once: disjoint and complete


def test_split_column_is_used(tmp_path):
    manifest = _dataset(tmp_path, 8, split=True)
    source = PairedSource()
    dataset = source.load(source.prepare(_options(manifest), tmp_path / "cache.h5"))
    assert dataset.splits["val"].column("row").tolist() == [3, 7]
    assert dataset.splits["test"].column("row").tolist() == [4, 8]


# ----------------------------------------------------------------------------- bad data


def test_missing_file_is_reported_with_row_and_column(tmp_path):
    message = _problems(_dataset(tmp_path, 9, extra={4: {"audio": "gone.wav"}}))
    assert "row 5, column 'audio': missing file 'gone.wav'" in message
    assert "header line excluded" in message and "on_bad_sample=skip" in message


def test_corrupt_file_is_reported(tmp_path):
    manifest = _dataset(tmp_path, 9)
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    (tmp_path / "6.wav").write_bytes(b"RIFF....WAVEjunk")
    message = _problems(manifest)
    assert "row 3, column 'rgb': cannot decode" in message
    assert "row 7, column 'audio': cannot decode" in message


def test_an_array_cell_that_is_no_npy_file_is_reported_as_such(tmp_path):
    extra = {i: {"normals": f"t{i}.npy"} for i in range(6)}
    manifest = _dataset(tmp_path, 6, extra=extra)
    for i in range(6):
        np.save(tmp_path / f"t{i}.npy", np.zeros((4, 4), np.float32))
    (tmp_path / "t1.npy").write_bytes(b"garbage, not an array")
    whole = (tmp_path / "t4.npy").read_bytes()
    (tmp_path / "t4.npy").write_bytes(whole[: len(whole) - 20])  # a valid header, data cut short
    message = _problems(manifest)
    assert "row 2, column 'normals': not a .npy file (no NumPy header)" in message
    assert "row 5, column 'normals': cannot read the .npy array (corrupt or truncated?)" in message


def test_wrong_channel_count_is_reported(tmp_path):
    manifest = _dataset(tmp_path, 9)
    _png(tmp_path / "1.png", np.zeros((16, 16, 1), np.uint8))  # grey, not RGB
    _png(tmp_path / "3-depth.png", np.zeros((16, 16, 3), np.uint8))  # RGB, not 16-bit depth
    message = _problems(manifest)
    assert "row 2, column 'rgb': 1 channel(s); rgb needs 3" in message
    assert "row 4, column 'depth': 3 channels" in message


def test_wrong_shape_of_an_array_column_is_reported(tmp_path):
    extra = {i: {"normals": f"t{i}.npy"} for i in range(6)}  # a front end without a reader
    manifest = _dataset(tmp_path, 6, extra=extra)
    for i in range(6):
        np.save(tmp_path / f"t{i}.npy", np.zeros((5, 5) if i == 4 else (4, 4), np.float32))
    message = _problems(manifest)
    assert (
        "row 5, column 'normals': shape [5, 5]; most of this column's arrays are [4, 4]" in message
    )


def test_missing_column_and_empty_cell_are_reported(tmp_path):
    manifest = _dataset(tmp_path, 9, fmt="jsonl", extra={2: {"depth": None}, 5: {"rgb": ""}})
    message = _problems(manifest)
    assert "row 3, column 'depth': this row has no 'depth' column" in message
    assert "row 6, column 'rgb': empty cell" in message


def test_label_outside_the_class_list_is_reported(tmp_path):
    manifest = _dataset(tmp_path, 9, extra={7: {"label": "purple"}})
    message = _problems(manifest, classes=list(CLASSES))
    assert "row 8, column 'label': label 'purple' is not in the class list" in message
    # an index outside the class list: tests/test_paired_accounting.py (labels are all integers)


def test_stop_lists_twenty_problems_then_how_many_more(tmp_path):
    manifest = _dataset(tmp_path, 25, extra={i: {"rgb": f"x{i}.png"} for i in range(25)})
    message = _problems(manifest)
    assert "25 of 25 rows have problems" in message
    assert message.count("missing file") == 20 and "and 5 more" in message


def test_skip_leaves_bad_rows_out_and_counts_them(tmp_path):
    manifest = _dataset(tmp_path, 12, extra={1: {"rgb": "gone.png"}, 9: {"label": ""}})
    source = PairedSource()
    cache = source.prepare(_options(manifest, on_bad_sample="skip"), tmp_path / "cache.h5")
    dataset = source.load(cache)
    assert dataset.skipped_rows == [2, 10]
    kept = sorted(r for s in dataset.splits.values() for r in s.column("row").tolist())
    assert kept == [r for r in range(1, 13) if r not in (2, 10)]
    with h5py.File(cache, "r") as f:
        problems = json.loads(f.attrs["problems"])
    assert problems[0].startswith("row 2, column 'rgb': missing file") and len(problems) == 2


def test_interrupted_conversion_resumes_to_the_same_cache(tmp_path, monkeypatch):
    manifest = _dataset(tmp_path, 12)
    source, options = PairedSource(), _options(manifest)
    whole = source.prepare(options, tmp_path / "whole.h5")
    monkeypatch.setattr(paired_cache, "FLUSH_EVERY", 1)
    real, calls = paired_cache.read_row, []

    def stop_after_five(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(paired_cache, "read_row", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        source.prepare(options, tmp_path / "cache.h5")
    part = tmp_path / "cache.h5.part"
    with h5py.File(part, "r") as f:
        assert f.attrs["rows_done"] == 5
    monkeypatch.setattr(paired_cache, "read_row", real)
    resumed = source.prepare(options, tmp_path / "cache.h5")
    assert not part.exists()
    a, b = source.load(whole), source.load(resumed)
    assert all(
        torch.equal(a.splits[s].column(k), b.splits[s].column(k))
        for s in a.splits
        for k in a.splits[s].keys()
    )


# ----------------------------------------------------------------------------- run config checks


def test_modalities_and_labels_come_from_the_manifest(tmp_path):
    manifest = _dataset(tmp_path / "labelled", 6)
    with pytest.raises(
        ConfigError,
        match=r"distill.students\[0\]: dataset 'paired' has no "
        r"modality 'hha' \(it has rgb, depth, audio\)",
    ):
        resolve_config("paired", overrides=["distill.students=[hha]"], data_path=manifest)
    unlabelled = _dataset(tmp_path / "unlabelled", 6, labels=False)
    assert not PairedSource().labelled_for(_options(unlabelled))
    with pytest.raises(ConfigError, match=r"methods\[1\]: method 'supervised' needs labels"):
        resolve_config("paired", data_path=unlabelled)
    with pytest.raises(ConfigError, match="teacher trains on labels"):
        resolve_config("paired", data_path=unlabelled, overrides=["distill.methods=[none,wcord]"])
    with pytest.raises(
        ConfigError,
        match=r"probe.probes\[0\]: probe 'linear' needs labels.*"
        r"retrieval",
    ):
        resolve_config(
            "paired",
            data_path=unlabelled,
            overrides=["teacher.optim.epochs=0", "distill.methods=[none,wcord]"],
        )
    _, config = resolve_config(
        "paired",
        data_path=unlabelled,
        overrides=[
            "teacher.optim.epochs=0",
            "distill.methods=[none,wcord]",
            "probe.probes=[retrieval]",
        ],
    )
    assert config.data.options().path == str(unlabelled)


# ----------------------------------------------------------------------------- CLI end to end

TINY = [
    "teacher.modality=rgb",
    "distill.students=[audio]",
    "data.paired.image_size=[16,16]",
    f"data.paired.sample_rate={RATE}",
    "data.paired.audio_seconds=0.25",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=16",
    "distill.optim.batch_size=16",
    "distill.methods=[none,wcord]",
    "distill.wcord.num_negatives=16",
    "probe.probes=[linear,retrieval]",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def test_xmodal_run_paired_end_to_end(tmp_path, capsys):
    manifest = _dataset(tmp_path / "data", 48, extra={5: {"audio": "gone.wav"}})
    argv = ["run", "paired", "--data", str(manifest), "--out", str(tmp_path / "run")]
    for item in (*TINY, "data.paired.on_bad_sample=skip"):
        argv += ["--set", item]
    assert main(argv) == 0
    assert "1 bad row(s) left out (rows 6" in capsys.readouterr().out
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {(r["modality"], r["method"], r["probe"]) for r in rows} >= {
        ("rgb", "teacher", "linear"),
        ("audio", "none", "linear"),
        ("audio", "wcord", "linear"),
        ("audio", "wcord", "retrieval"),
    }
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"] == {"skipped_rows": 1, "skipped_row_numbers": [6]}

    assert main(["data", "info", str(manifest)]) == 1  # it lists a problem
    out = capsys.readouterr().out
    for text in (
        "paired manifest (CSV)",
        "48 (1 with problems)",
        "3 classes",
        "labels per split",
        "missing file 'gone.wav'",
        "seeded (no split column",
    ):
        assert text in out


def test_unlabelled_manifest_runs_with_a_frozen_teacher_and_retrieval(tmp_path):
    manifest = _dataset(tmp_path / "data", 24, labels=False, fmt="jsonl")
    argv = ["run", "paired", "--data", str(manifest), "--out", str(tmp_path / "run")]
    for item in (*TINY, "teacher.optim.epochs=0", "probe.probes=[retrieval]"):
        argv += ["--set", item]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {(r["method"], r["probe"]) for r in rows} == {
        ("none", "retrieval"),
        ("wcord", "retrieval"),
    }
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if "recall" in r["metric"])
