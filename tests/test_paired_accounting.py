"""The manifest-wide rules of ``paired`` (:mod:`xmodal.data.paired.rules`).

Duplicate or empty ids, one file in two columns of a row, one file in two rows (and never in
two splits), mixed label kinds, unknown columns, paths outside the manifest's folder. Each is
one error naming rows and columns and the option that allows it, raised before any file is read
(``xmodal run paired`` exits 2 before training), and ``xmodal data info`` lists it and exits 1
(0 on a clean manifest).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from test_paired import CLASSES, TINY, _dataset, _options, _problems

from xmodal.cli.data_info import describe
from xmodal.cli.main import main
from xmodal.core.errors import DataError
from xmodal.data.paired import validate as paired_validate
from xmodal.data.paired_source import PairedSource

ROWS = 8  # splits of _dataset(split=True): rows 1, 2, 5, 6 train; 3, 7 val; 4, 8 test


def _no_file_read(monkeypatch) -> None:
    """Reading any manifest file fails the test: the rules come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a file was read before the manifest-wide rules were checked")

    monkeypatch.setattr(paired_validate, "read_cell", refuse)


# ----------------------------------------------------------------------------- the cases


def _duplicate_ids(folder: Path) -> Path:
    return _dataset(folder, ROWS, extra={4: {"id": "s1"}})


def _empty_ids(folder: Path) -> Path:
    return _dataset(folder, ROWS, extra={2: {"id": ""}, 5: {"id": ""}})


def _one_file_in_two_columns(folder: Path) -> Path:
    return _dataset(folder, ROWS, extra={3: {"depth": "./3.png"}})  # row 4: its rgb file


def _duplicate_file_across_splits(folder: Path) -> Path:
    return _dataset(folder, ROWS, split=True, extra={6: {"rgb": "./0.png"}})  # row 7 (val)


def _mixed_labels(folder: Path) -> Path:
    return _dataset(folder, ROWS, extra={1: {"label": "1"}, 3: {"label": "0"}})


def _unknown_column(folder: Path) -> Path:
    return _dataset(folder, ROWS, extra={i: {"notes": f"take {i}"} for i in range(ROWS)})


def _outside(folder: Path) -> Path:
    manifest = _dataset(folder, ROWS, extra={2: {"rgb": "../elsewhere/2.png"}})
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    for name in ("0.png", "2.png"):
        (folder / name).rename(elsewhere / name)
    (folder / "0.png").symlink_to(elsewhere / "0.png")  # row 1: a link out
    return manifest


CASES = {  # name: (writer, fragments of the one error line)
    "duplicate ids": (
        _duplicate_ids,
        ["column 'id': ids repeat: 's1' in rows 2, 5; ids must be unique"],
    ),
    "empty ids": (
        _empty_ids,
        ["column 'id': empty id in rows 3, 6; give every row a unique id, or remove the id column"],
    ),
    "one file in two columns": (
        _one_file_in_two_columns,
        [
            "column 'depth': the same file as column 'rgb' in row 4 (row 4: './3.png' -> ",
            "3.png); one file is not two modalities",
        ],
    ),
    "duplicate file across splits": (
        _duplicate_file_across_splits,
        [
            "column 'rgb': the same file in several rows: ",
            "0.png in row 1 (train), row 7 (val)",
            "; in different splits, test samples would be trained on; ",
            "data.paired.allow_duplicates=true",
        ],
    ),
    "mixed labels": (
        _mixed_labels,
        [
            "column 'label': labels mix class names (rows 1, 3, 5, 6, 7, 8: 'red', 'blue', "
            "'green', ...) and integers (rows 2, 4: '1', '0'); write every label as a class name, "
            "or every one as an integer"
        ],
    ),
    "unknown column": (
        _unknown_column,
        [
            "column 'notes': unknown column: no front end 'notes' is registered",
            "set data.paired.ignore_columns=[notes] to leave it unread",
        ],
    ),
    "outside the folder": (
        _outside,
        [
            "column 'rgb': row 1's '0.png' resolves to ",
            "elsewhere/0.png, outside the manifest's folder ",
            "(also row 3); ",
            "data.paired.allow_outside=true",
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_is_one_error_before_any_file_is_read(tmp_path, monkeypatch, case):
    writer, fragments = CASES[case]
    manifest = writer(tmp_path / "data")
    _no_file_read(monkeypatch)
    message = _problems(manifest)
    assert message.startswith(f"manifest '{manifest}', column '") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("case", list(CASES))
def test_xmodal_run_paired_exits_2_before_training(tmp_path, monkeypatch, capsys, case):
    writer, fragments = CASES[case]
    manifest = writer(tmp_path / "data")
    _no_file_read(monkeypatch)
    argv = ["run", "paired", "--data", str(manifest), "--out", str(tmp_path / "run")]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: manifest '") and all(f in err for f in fragments)
    assert len(err.splitlines()) == 1
    assert not any((tmp_path / "run" / stage).exists() for stage in ("teacher", "distill"))


@pytest.mark.parametrize("case", list(CASES))
def test_data_info_lists_each_rule_and_exits_1(tmp_path, capsys, case):
    writer, fragments = CASES[case]
    manifest = writer(tmp_path / "data")
    assert main(["data", "info", str(manifest)]) == 1
    assert "problems" in capsys.readouterr().out
    sections = {title: rows for title, _, rows in describe(manifest)}
    assert "1 manifest-wide" in dict(sections["paired manifest"])["problems"]
    column, message = fragments[0].split(": ", 1)
    assert any(f"column '{row[1]}'" == column and message in row[2] for row in sections["problems"])


def test_data_info_exits_0_on_a_clean_manifest(tmp_path, capsys):
    assert main(["data", "info", str(_dataset(tmp_path, ROWS, split=True))]) == 0
    out = capsys.readouterr().out
    assert "none found" in out and "warnings" not in out


def test_several_broken_rules_are_one_error_with_a_line_each(tmp_path):
    extra = {i: {"notes": "x"} for i in range(ROWS)}
    extra[4] = {"id": "s1", "notes": "x", "label": "2"}
    message = _problems(_dataset(tmp_path, ROWS, extra=extra))
    lines = message.splitlines()
    assert lines[0].endswith(
        "breaks 3 rules (rows count data rows from 1, the header line excluded):"
    )
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "column 'notes'",
        "column 'id'",
        "column 'label'",
    ]


# ----------------------------------------------------------------------------- the options


def test_ignore_columns_leaves_a_column_unread(tmp_path, capsys):
    manifest = _unknown_column(tmp_path)
    source, options = PairedSource(), _options(manifest, ignore_columns=["notes"])
    assert source.modalities_for(options) == ("rgb", "depth", "audio")
    dataset = source.load(source.prepare(options, tmp_path / "cache.h5"))
    assert "notes" not in dataset.splits["train"].keys()
    assert main(["data", "info", str(manifest), "--set", "data.paired.ignore_columns=[notes]"]) == 0
    assert "ignored columns" in capsys.readouterr().out
    assert main(["data", "info", str(manifest), "--set", "teacher.modality=rgb"]) == 2
    assert "data info takes data.paired.KEY=VALUE" in capsys.readouterr().err


def test_ignore_columns_cannot_hide_label_split_or_id(tmp_path):
    manifest = _dataset(tmp_path, ROWS)
    with pytest.raises(ValueError, match="ignore_columns=\\['label'\\] \\(must be columns other"):
        _options(manifest, ignore_columns=["label"])


def test_allow_outside_follows_the_paths(tmp_path):
    manifest = _outside(tmp_path / "data")
    source = PairedSource()
    dataset = source.load(
        source.prepare(_options(manifest, allow_outside=True), tmp_path / "cache.h5")
    )
    assert sum(len(s.column("row")) for s in dataset.splits.values()) == ROWS


def test_allow_duplicates_in_one_split_warns_and_keeps_them(tmp_path, capsys):
    manifest = _dataset(tmp_path, ROWS, split=True, extra={4: {"rgb": "0.png"}})  # rows 1, 5: train
    source = PairedSource()
    with pytest.raises(DataError, match="allow_duplicates=true"):
        source.prepare(_options(manifest), tmp_path / "cache.h5")
    dataset = source.load(
        source.prepare(_options(manifest, allow_duplicates=True), tmp_path / "cache.h5")
    )
    assert dataset.splits["train"].column("row").tolist() == [1, 2, 5, 6]
    (note,) = dataset.notes
    assert (
        note.startswith("column 'rgb': the same file in several rows, kept")
        and "0.png in rows 1, 5" in note
    )
    assert main(["data", "info", str(manifest), "--set", "data.paired.allow_duplicates=true"]) == 0
    assert "warnings (allowed by options)" in capsys.readouterr().out


def test_allow_duplicates_never_lets_splits_share_a_file(tmp_path):
    manifest = _duplicate_file_across_splits(tmp_path)
    message = _problems(manifest, allow_duplicates=True)
    assert message.startswith(
        f"manifest '{manifest}', column 'rgb': rows of different splits share a file: "
    )
    assert (
        "0.png in row 1 (train), row 7 (val); test samples would be trained on, even with "
        "data.paired.allow_duplicates=true: give rows that share a file the same split" in message
    )


def test_a_seeded_split_keeps_rows_sharing_a_file_together(tmp_path):
    n = 40
    shared = {i: {"rgb": "0.png", "audio": "1.wav"} for i in range(2, n, 5)}  # 8 rows + rows 1, 2
    manifest = _dataset(tmp_path, n, extra=shared)
    source = PairedSource()
    cache = source.prepare(_options(manifest, allow_duplicates=True), tmp_path / "cache.h5")
    with h5py.File(cache, "r") as f:
        split_of = {int(r): s for s in ("train", "val", "test") for r in f[s]["row"][()]}
        warnings = json.loads(f.attrs["warnings"])
    linked = [1, 2, *(i + 1 for i in range(2, n, 5))]  # rgb links rows 1 and 3, 8, ...; audio 2
    assert len({split_of[r] for r in linked}) == 1 and len(split_of) == n
    assert [w.split(":")[0] for w in warnings] == ["column 'rgb'", "column 'audio'"]


def test_integer_labels_with_a_class_list_are_indices(tmp_path):
    extra = {i: {"label": str(i % 3)} for i in range(ROWS)}
    extra[7] = {"label": "5"}
    message = _problems(_dataset(tmp_path, ROWS, extra=extra), classes=list(CLASSES))
    assert "row 8, column 'label': label '5' is not in the class list" in message
    assert "mix" not in message


def test_a_jsonl_row_without_its_id_key_has_an_empty_id(tmp_path):
    manifest = _dataset(tmp_path / "data", ROWS, fmt="jsonl", extra={6: {"id": None}})
    assert "column 'id': empty id in row 7; " in _problems(manifest)


def test_allow_duplicates_does_not_allow_one_file_in_two_columns(tmp_path):
    manifest = _one_file_in_two_columns(tmp_path / "data")
    message = _problems(manifest, allow_duplicates=True)
    assert "column 'depth': the same file as column 'rgb' in row 4" in message


def test_each_pair_of_columns_sharing_a_file_is_its_own_finding(tmp_path):
    """A row naming one file in three columns is two findings.

    Each is on a later column and names the first; a path that only looks alike (another path
    to another file) is no finding.
    """
    manifest = _dataset(
        tmp_path / "data",
        ROWS,
        extra={1: {"depth": "1.png", "audio": "./1.png"}, 2: {"depth": "../data/2-depth.png"}},
    )
    message = _problems(manifest, allow_outside=True)
    assert message.startswith(f"manifest '{manifest}' breaks 2 rules")
    assert "column 'depth': the same file as column 'rgb' in row 2 (row 2: '1.png' -> " in message
    assert "column 'audio': the same file as column 'rgb' in row 2 (row 2: './1.png' -> " in message
    assert "row 3" not in message
