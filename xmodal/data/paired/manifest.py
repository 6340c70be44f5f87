"""Read a ``paired`` manifest: a CSV or JSONL file with one row per sample.

Every column other than ``label``, ``split``, ``id`` and those ignored
(``data.paired.ignore_columns``) is a modality whose cells are file paths relative to the
manifest's folder (:mod:`.rules` checks the manifest as a whole: known columns, non-empty
unique ids, unique files, one file per column of a row, one kind of label, paths inside the
folder). A CSV's first line is its header; a JSONL
file holds one JSON object per line (blank lines are skipped) and its columns are the keys of
all rows, in order of first appearance. Cells are kept as text: ``None`` where a row lacks the
column (a short CSV line, a missing JSON key), ``""`` for an empty cell.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from xmodal.core.errors import DataError
from xmodal.data.paired.problems import Problem

#: columns that are not modalities
RESERVED = ("label", "split", "id")
FORMATS = {".csv": "CSV", ".jsonl": "JSONL"}


@dataclass
class Manifest:
    """A manifest as read: its columns and each row's cells, as text.

    Attributes:
        path: the manifest file.
        format: ``CSV`` or ``JSONL``.
        columns: every column, in file order.
        rows: one ``{column: cell}`` per data row (``None``: the row lacks the column).
        problems: rows whose layout is wrong (a CSV line with more cells than the header).
        ignored: columns that are not read (``data.paired.ignore_columns``).
    """

    path: Path
    format: str
    columns: list[str]
    rows: list[dict[str, str | None]]
    problems: list[Problem] = field(default_factory=list)
    ignored: tuple[str, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality columns, in file order."""
        return tuple(c for c in self.columns if c not in RESERVED and c not in self.ignored)

    @property
    def labelled(self) -> bool:
        """Whether the manifest has a ``label`` column."""
        return "label" in self.columns

    def file(self, cell: str) -> Path:
        """A cell's file: relative paths are taken from the manifest's folder."""
        path = Path(cell).expanduser()
        return path if path.is_absolute() else self.path.parent / path


def require_manifest(path: str) -> Path:
    """The configured manifest, or one DataError saying how to give it."""
    if not path:
        raise DataError(
            "paired needs a manifest (a .csv or .jsonl file, one row per sample): "
            "pass --data manifest.csv, or set data.paired.path"
        )
    manifest = Path(path).expanduser()
    if manifest.suffix.lower() not in FORMATS:
        raise DataError(
            f"manifest '{manifest}' is neither .csv nor .jsonl; write one row per "
            "sample in either format"
        )
    if not manifest.is_file():
        raise DataError(f"manifest '{manifest}' does not exist; check --data / data.paired.path")
    return manifest


def read_manifest(path: str | Path, ignore_columns: list[str] | tuple[str, ...] = ()) -> Manifest:
    """Parse ``path`` (see the module docstring), leaving ``ignore_columns`` unread.

    Raises:
        DataError: it is not a manifest at all (not UTF-8, no modality column, no rows, ...).
    """
    source = require_manifest(str(path))
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"manifest '{source}' is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    kind = FORMATS[source.suffix.lower()]
    manifest = _read_csv(source, text) if kind == "CSV" else _read_jsonl(source, text)
    manifest.ignored = tuple(ignore_columns)
    if not manifest.modalities:
        ignored = f", ignored: {', '.join(manifest.ignored)}" if manifest.ignored else ""
        raise DataError(
            f"manifest '{source}' has no modality column (columns: "
            f"{', '.join(manifest.columns) or 'none'}{ignored}); name one column per "
            "modality after its front end, e.g. rgb, depth, audio"
        )
    if not manifest.rows:
        raise DataError(f"manifest '{source}' has no rows")
    return manifest


def manifest_digest(path: Path) -> str:
    """SHA-256 of the manifest's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_digest(manifest: Manifest) -> str:
    """SHA-256 over every referenced file's path, size and modification time.

    It changes when a file is replaced, without reading the files.
    """
    digest = hashlib.sha256()
    for row in manifest.rows:
        for modality in manifest.modalities:
            cell = row.get(modality)
            if not cell:
                continue
            try:
                stat = manifest.file(cell).stat()
                digest.update(f"{cell}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{cell}\0missing\n".encode())
    return digest.hexdigest()


def _read_csv(source: Path, text: str) -> Manifest:
    try:
        lines = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise DataError(f"manifest '{source}' is not valid CSV ({exc})") from None
    while lines and not any(cell.strip() for cell in lines[-1]):
        lines.pop()  # trailing blank lines
    if not lines:
        raise DataError(f"manifest '{source}' is empty; its first line must name the columns")
    header = [cell.strip() for cell in lines[0]]
    _check_columns(source, header)
    rows, problems = [], []
    for number, cells in enumerate(lines[1:], start=1):
        row: dict[str, str | None] = {
            c: (cells[i].strip() if i < len(cells) else None) for i, c in enumerate(header)
        }
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            problems.append(
                Problem(
                    number,
                    "(row)",
                    f"{len(cells)} cells, but the header names {len(header)} columns",
                )
            )
        rows.append(row)
    return Manifest(source, "CSV", header, rows, problems)


def _read_jsonl(source: Path, text: str) -> Manifest:
    columns: dict[str, None] = {}
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"manifest '{source}', line {line_number}: not valid JSON "
                f"({exc.msg}); write one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"manifest '{source}', line {line_number}: expected a JSON object "
                f'{{"rgb": "...", ...}}, got {type(record).__name__}'
            )
        columns.update(dict.fromkeys(str(k).strip() for k in record))
        records.append({str(k).strip(): v for k, v in record.items()})
    header = list(columns)
    _check_columns(source, header)
    rows = [
        {c: (None if c not in r else "" if r[c] is None else str(r[c]).strip()) for c in header}
        for r in records
    ]
    return Manifest(source, "JSONL", header, rows)


def _check_columns(source: Path, header: list[str]) -> None:
    seen = set()
    for column in header:
        if not column:
            raise DataError(f"manifest '{source}': a column has no name; name every column")
        if column in seen:
            raise DataError(f"manifest '{source}': column '{column}' appears twice")
        seen.add(column)
