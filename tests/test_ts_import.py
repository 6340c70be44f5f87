"""``.ts`` archives (UEA/UCR, sktime, aeon) -> a ``paired`` manifest, and the named IMU front ends.

The files are written here in the archive's real format (header, comments, ``@data``, colons
between dimensions, the label last), from arrays the tests keep to compare against.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.cli.main import main
from xmodal.core.errors import DataError, XmodalError
from xmodal.core.registry import FRONTENDS
from xmodal.data.paired.from_ts import parse_channels, stratified_holdout, write_ts_manifest
from xmodal.data.paired.readers import is_sequence
from xmodal.data.paired.ts_format import read_ts
from xmodal.encoders.frontends import SequenceFrontend

CLASSES = ["Standing", "Running", "Walking"]


def write_ts(
    path: Path, values: np.ndarray, labels: list[str], header: list[str] | None = None
) -> Path:
    """``values`` ``[N, C, T]`` and labels -> a ``.ts`` file as the UEA archive writes one."""
    n, c, t = values.shape
    lines = header or [
        "#A watch's accelerometer and gyroscope, written by the test.",
        "@problemName Tiny",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        f"@dimensions {c}",
        "@equalLength true",
        f"@seriesLength {t}",
        f"@classLabel true {' '.join(CLASSES)}",
        "@data",
    ]
    for case, label in zip(values, labels, strict=True):
        dims = [",".join(repr(float(v)) for v in row) for row in case]
        lines.append(":".join(dims) + ":" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def archive(n: int, c: int = 6, t: int = 20, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, c, t)).astype(np.float32)
    return values, [CLASSES[i % len(CLASSES)] for i in range(n)]


# ----------------------------------------------------------------------------- the reader


def test_read_ts_returns_the_written_values_labels_and_classes(tmp_path):
    values, labels = archive(7, c=4, t=9)
    got = read_ts(write_ts(tmp_path / "a.ts", values, labels))
    np.testing.assert_array_equal(got.values, values)
    assert got.values.dtype == np.float32 and got.values.shape == (7, 4, 9)
    assert got.labels == labels and got.classes == CLASSES and got.problem == "Tiny"


def _bad_file(tmp_path: Path, change: tuple[str, str] | None, data: list[str] | None) -> Path:
    """A 2-dimension, 3-step archive with one header line changed or other data lines."""
    path = write_ts(tmp_path / "bad.ts", *archive(2, c=2, t=3))
    text = path.read_text()
    if change is not None:
        text = text.replace(*change)
    if data is not None:  # the data section replaced: its first line is line 11
        text = text.split("@data")[0] + "@data\n" + "\n".join(data) + "\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "change, data, message",
    [
        (None, ["1,2,?:4,5,6:Running"], r"bad\.ts:11: dimension 1 has missing values \('\?'\)"),
        (
            None,
            ["1,2,3:4,5:Running"],
            r"bad\.ts:11: its dimensions have different lengths \[3, 2\]",
        ),
        (None, ["1,2,x:4,5,6:Running"], r"bad\.ts:11: dimension 1: 'x' is not a number"),
        (None, ["1,2,3:4,5,6:Jumping"], r"labels \['Jumping'\] are not among @classLabel"),
        (
            None,
            ["1,2,3,4:4,5,6,7:Running", "1,2:3,4:Walking"],
            r"case 2 has \[dimensions, length\]",
        ),
        (None, ["1,2,inf:4,5,6:Running"], r"bad\.ts:11: non-finite values"),
        (None, ["1,2,3"], r"bad\.ts:11: no class label"),
        (None, [], r"no cases after '@data'"),
        (("@timeStamps false", "@timeStamps true"), None, r"@timeStamps true .* not supported"),
        (("@classLabel true", "@classLabel false"), None, r"@classLabel is not true"),
        (
            ("@data", "#no data line"),
            None,
            r"bad\.ts:11: a header line must start with '@' \(before",
        ),
        (("@problemName Tiny", "problemName Tiny"), None, r"bad\.ts:2: a header line must start"),
    ],
)
def test_read_ts_names_the_file_line_and_fix(tmp_path, change, data, message):
    with pytest.raises(DataError, match=message):
        read_ts(_bad_file(tmp_path, change, data))


def test_a_header_without_data_is_one_error(tmp_path):
    path = tmp_path / "header.ts"
    path.write_text("@problemName X\n@classLabel true a b\n")
    with pytest.raises(DataError, match="header.ts: no '@data' line; is this a .ts file"):
        read_ts(path)


def test_a_file_that_is_not_text_is_one_error(tmp_path):
    path = tmp_path / "binary.ts"
    path.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(DataError, match="binary.ts: cannot read it as a .ts text file"):
        read_ts(path)


# ----------------------------------------------------------------------------- the manifest


@pytest.mark.parametrize(
    "spec, dims", [("0-2", [0, 1, 2]), ("3,5", [3, 5]), ("0-1,4", [0, 1, 4]), ("2", [2])]
)
def test_parse_channels(spec, dims):
    assert parse_channels(spec) == dims


@pytest.mark.parametrize("spec", ["a-b", "2-1", "0,0", "-1", ""])
def test_parse_channels_refuses_bad_specs(spec):
    with pytest.raises(DataError, match="channels"):
        parse_channels(spec)


def test_stratified_holdout_takes_the_share_of_every_class_and_is_seeded():
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2
    held = stratified_holdout(labels, 0.2, seed=3)
    counts = {name: int(held[np.asarray(labels) == name].sum()) for name in "abc"}
    assert counts == {"a": 2, "b": 1, "c": 1}  # round(0.2 n), at least one, never all
    assert np.array_equal(held, stratified_holdout(labels, 0.2, seed=3))
    assert not np.array_equal(held, stratified_holdout(labels, 0.2, seed=4))
    assert not stratified_holdout(labels, 0.0, seed=3).any()


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_column_holds_its_dimensions_and_the_archive_splits_are_kept(tmp_path):
    train_values, train_labels = archive(15, seed=1)
    test_values, test_labels = archive(6, seed=2)
    manifest = write_ts_manifest(
        write_ts(tmp_path / "TRAIN.ts", train_values, train_labels),
        tmp_path / "out",
        {"accelerometer": [0, 1, 2], "gyroscope": [3, 4, 5]},
        test=write_ts(tmp_path / "TEST.ts", test_values, test_labels),
        val_fraction=0.2,
        seed=0,
    )
    rows = _rows(manifest)
    assert list(rows[0]) == ["id", "split", "label", "accelerometer", "gyroscope"]
    assert len(rows) == 21
    for row in rows:
        source = train_values if row["id"].startswith("train") else test_values
        i = int(row["id"].split("-")[1])
        accel = np.load(manifest.parent / row["accelerometer"])
        gyro = np.load(manifest.parent / row["gyroscope"])
        np.testing.assert_array_equal(accel, source[i, :3])
        np.testing.assert_array_equal(gyro, source[i, 3:])
        assert accel.dtype == np.float32 and accel.shape == (3, 20)
    splits = [r["split"] for r in rows]
    assert splits[15:] == ["test"] * 6  # the test file is test, all of it
    val = [r["label"] for r in rows[:15] if r["split"] == "val"]
    assert sorted(val) == sorted(CLASSES)  # one of each class's 5 train rows


def test_windows_cut_each_case_and_stay_in_its_split(tmp_path):
    values, labels = archive(9, c=2, t=25, seed=5)
    manifest = write_ts_manifest(
        write_ts(tmp_path / "TRAIN.ts", values, labels),
        tmp_path / "out",
        {"sequence": [0, 1]},
        val_fraction=0.2,
        test_fraction=0.3,
        window=10,
    )
    rows = _rows(manifest)
    assert len(rows) == 9 * 2  # 25 steps: two windows of 10, the remainder dropped
    by_case: dict[str, set[str]] = {}
    for row in rows:
        case, start = row["id"].rsplit("-w", 1)
        by_case.setdefault(case, set()).add(row["split"])
        i, s = int(case.split("-")[1]), int(start)
        window = np.load(manifest.parent / row["sequence"])
        np.testing.assert_array_equal(window, values[i, :, s : s + 10])
    assert all(len(splits) == 1 for splits in by_case.values())
    counts = {s: sum(1 for v in by_case.values() if s in v) for s in ("train", "val", "test")}
    assert counts == {"train": 3, "val": 3, "test": 3}  # 3 classes x (1 test, then 1 val)


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"label": [0]}, "column 'label' is reserved"),
        ({"rgb": [0]}, "column 'rgb': not a registered sequence front end"),
        ({"imu9": [0]}, "unknown modality 'imu9'"),
        ({"gyroscop": [0]}, "unknown modality 'gyroscop': did you mean 'gyroscope'"),
        ({"sequence": [0, 6]}, r"dimensions \[6\] are outside .*TRAIN.ts's 6 \(0-5\)"),
        ({}, "no columns"),
    ],
)
def test_bad_columns_are_refused_before_anything_is_written(tmp_path, columns, message):
    values, labels = archive(4)
    train = write_ts(tmp_path / "TRAIN.ts", values, labels)
    with pytest.raises(XmodalError, match=message):
        write_ts_manifest(train, tmp_path / "out", columns)
    assert not (tmp_path / "out").exists()


def test_a_test_file_of_another_shape_or_a_full_folder_is_refused(tmp_path):
    values, labels = archive(4, t=20)
    train = write_ts(tmp_path / "TRAIN.ts", values, labels)
    other = write_ts(tmp_path / "TEST.ts", *archive(4, t=21))
    with pytest.raises(DataError, match=r"TEST.ts: \[dimensions, length\] \[6, 21\] differs"):
        write_ts_manifest(train, tmp_path / "out", {"sequence": [0]}, test=other)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="full: not empty"):
        write_ts_manifest(train, tmp_path / "full", {"sequence": [0]})
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(DataError, match="window 21: must be in 0..20"):
        write_ts_manifest(train, tmp_path / "out", {"sequence": [0]}, window=21)


# ----------------------------------------------------------------------------- front ends


@pytest.mark.parametrize("name", ["accelerometer", "gyroscope"])
def test_the_imu_front_ends_are_sequence_front_ends_with_their_own_name(name):
    cls = FRONTENDS.get(name)
    assert issubclass(cls, SequenceFrontend) and cls.layout == "sequence"
    front = cls(channels=3, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0])
    x = torch.randn(2, 3, 5)
    reference = SequenceFrontend(channels=3, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0])
    torch.testing.assert_close(front(x), reference(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=rf"^{name} input must be \[B, C=3, T >= 1\]"):
        front(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=rf"^{name} front end: mean has 2 values"):
        cls(channels=3, mean=[1.0, 2.0])


class EmgFrontend(SequenceFrontend):
    """The three lines docs/sequences.md promises a plugin needs for another sensor's name."""

    kind = "emg"


def test_a_plugin_subclass_names_another_sensor(tmp_path, monkeypatch):
    FRONTENDS.names()  # built-ins first
    monkeypatch.setitem(FRONTENDS._entries, "emg", EmgFrontend)  # for this test only
    monkeypatch.setitem(FRONTENDS._packages, "emg", "some-plugin")
    monkeypatch.setitem(FRONTENDS._descriptions, "emg", "")
    FRONTENDS.check_plugin("emg", EmgFrontend)  # it keeps the front-end contract
    assert is_sequence("emg") and not is_sequence("rgb")
    values, labels = archive(6, c=8)
    manifest = write_ts_manifest(
        write_ts(tmp_path / "T.ts", values, labels), tmp_path / "o", {"emg": list(range(8))}
    )
    assert np.load(manifest.parent / _rows(manifest)[0]["emg"]).shape == (8, 20)


# ----------------------------------------------------------------------------- end to end

TINY = [
    "teacher.modality=accelerometer",
    "distill.students=[gyroscope]",
    "teacher.optim.epochs=1",
    "distill.optim.epochs=1",
    "teacher.optim.batch_size=8",
    "distill.optim.batch_size=8",
    "distill.methods=[none,wcord]",
    "distill.wcord.num_negatives=8",
    "distill.encoders.gyroscope={name: temporal_conv, temporal_conv: {width: 8, depth: 2}}",
    "teacher.encoder={name: temporal_conv, temporal_conv: {width: 8, depth: 2}}",
    "probe.probes=[linear]",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
]


def test_from_ts_then_run_paired_from_an_accelerometer_to_a_gyroscope(tmp_path, capsys):
    rng = np.random.default_rng(0)
    values, labels = archive(24, t=16, seed=3)
    values[:, :3] += 9.8 * rng.random((24, 3, 1)).astype(np.float32)  # gravity on the accel
    train = write_ts(tmp_path / "TRAIN.ts", values[:18], labels[:18])
    test = write_ts(tmp_path / "TEST.ts", values[18:], labels[18:])
    folder = tmp_path / "bm"
    argv = ["data", "from-ts", str(train), str(test), "--to", str(folder)]
    argv += ["--column", "accelerometer=0-2", "--column", "gyroscope=3-5"]
    assert main(argv) == 0
    assert re.search(r"problems\s*│\s*none found", capsys.readouterr().out)
    out = tmp_path / "run"
    run = ["run", "paired", "--data", str(folder / "manifest.csv"), "--out", str(out)]
    for item in TINY:
        run += ["--set", item]
    assert main(run) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["modality"], r["method"]) for r in rows} >= {
        ("accelerometer", "teacher"),
        ("gyroscope", "none"),
        ("gyroscope", "wcord"),
    }
    exports = {
        e["modality"]: e for e in map(json.loads, map(Path.read_text, out.rglob("encoder.json")))
    }
    accel_mean = exports["accelerometer"]["frontend_options"]["mean"]
    gyro_mean = exports["gyroscope"]["frontend_options"]["mean"]
    train_rows = [r for r in _rows(folder / "manifest.csv") if r["split"] == "train"]
    expected = np.mean([np.load(folder / r["gyroscope"]) for r in train_rows], axis=(0, 2))
    np.testing.assert_allclose(gyro_mean, expected, rtol=1e-5, atol=1e-6)
    assert min(accel_mean) > 2.0 > max(abs(m) for m in gyro_mean)  # statistics of each column


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--column", "gyroscope"], "--column 'gyroscope': write NAME=DIMS"),
        (["--column", "gyroscope=0-1", "--column", "gyroscope=2"], "given twice"),
        (["--column", "gyroscope=x"], "channels 'x'"),
    ],
)
def test_from_ts_refuses_a_bad_column_in_one_line(tmp_path, capsys, extra, message):
    train = write_ts(tmp_path / "TRAIN.ts", *archive(6))
    assert main(["data", "from-ts", str(train), "--to", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_from_ts_without_columns_writes_one_sequence_column_of_every_dimension(tmp_path):
    values, labels = archive(6, c=4, t=7)
    train = write_ts(tmp_path / "TRAIN.ts", values, labels)
    assert main(["data", "from-ts", str(train), "--to", str(tmp_path / "o")]) == 0
    rows = _rows(tmp_path / "o" / "manifest.csv")
    assert list(rows[0]) == ["id", "split", "label", "sequence"]
    for row in rows:
        i = int(row["id"].split("-")[1])
        np.testing.assert_array_equal(np.load(tmp_path / "o" / row["sequence"]), values[i])
