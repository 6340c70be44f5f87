"""The rules of a manifest as a whole, checked before any file is read.

The check is cheap: cells and resolved paths only. Each broken rule is one
:class:`~xmodal.data.paired.problems.Finding`.

- every column is a modality named after a registered front end, or ``id``, ``label``,
  ``split``, or listed in ``data.paired.ignore_columns``;
- with an ``id`` column, every row has an id (no empty cell) and ids are unique (so no two
  splits share one);
- no row holds the same file (by resolved path) in two columns: one file is not two
  modalities, whatever ``data.paired.allow_duplicates`` says;
- a ``label`` column holds class names or integers, not both (:func:`.labels.mixed_labels`);
- every file resolves (symbolic links followed) inside the manifest's folder, unless
  ``data.paired.allow_outside``;
- no file (by resolved path) is in two rows of a column, unless ``data.paired.allow_duplicates``
  (then a warning); even then, rows sharing a file share a split: a seeded split keeps them
  together, and a ``split`` column that parts them is an error, so no test sample is trained on.

Leaving rows out does not fix a broken rule: it stops preprocessing whatever
``data.paired.on_bad_sample`` says, and ``xmodal data info`` lists it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.labels import mixed_labels
from xmodal.data.paired.manifest import RESERVED, Manifest
from xmodal.data.paired.problems import ROW_NUMBERS, Finding, Problem, rows_text
from xmodal.data.paired.splits import assign_splits

#: how many repeated ids or files one finding lists before "and N more"
EXAMPLES = 3


@dataclass
class Rules:
    """What the manifest-wide check found, and the splits it assigned.

    Attributes:
        findings: every broken rule (errors, then the warnings an option allowed).
        splits: each row's split (None where its ``split`` cell is bad), rows sharing a file
            kept together when duplicates are allowed.
        split_problems: the rows whose ``split`` cell is empty or unknown.
    """

    findings: list[Finding]
    splits: list[str | None]
    split_problems: list[Problem]

    @property
    def errors(self) -> list[Finding]:
        """The broken rules that stop preprocessing."""
        return [f for f in self.findings if not f.warning]

    @property
    def warnings(self) -> list[Finding]:
        """The broken rules an option allowed (reported, not errors)."""
        return [f for f in self.findings if f.warning]


def check_rules(manifest: Manifest, options: PairedOptions) -> Rules:
    """Check the rules of the module docstring and assign the splits."""
    unknown = _unknown_columns(manifest)
    findings = [*unknown, *_empty_ids(manifest), *_duplicate_ids(manifest)]
    mixed = mixed_labels(manifest, options.classes)
    if mixed is not None:
        findings.append(mixed)
    files = _resolved_files(manifest, skip={f.column for f in unknown})  # not files, maybe
    if not options.allow_outside:
        findings += _outside(manifest, files)
    findings += _one_file_in_two_columns(files)
    shared = {
        column: {path: rows for path, rows in by_path.items() if len(rows) > 1}
        for column, by_path in _rows_by_file(files).items()
    }
    together = _connected([rows for by_path in shared.values() for rows in by_path.values()])
    splits, split_problems = assign_splits(
        manifest,
        options.val_fraction,
        options.test_fraction,
        options.seed,
        together if options.allow_duplicates else (),
    )
    for column, by_path in shared.items():
        if by_path:
            findings += _duplicate_files(column, by_path, splits, options.allow_duplicates)
    findings.sort(key=lambda f: f.warning)
    return Rules(findings, splits, split_problems)


def rules_message(manifest: Manifest, errors: list[Finding]) -> str:
    """The one error that stops preprocessing: one line per broken rule."""
    if len(errors) == 1:
        return f"manifest '{manifest.path}', {errors[0]}"
    lines = "\n".join(f"  {finding}" for finding in errors)
    return f"manifest '{manifest.path}' breaks {len(errors)} rules ({ROW_NUMBERS}):\n{lines}"


def _unknown_columns(manifest: Manifest) -> list[Finding]:
    from xmodal.core.registry import FRONTENDS

    findings = []
    for column in manifest.modalities:
        if column in FRONTENDS:
            continue
        close = difflib.get_close_matches(column, [*FRONTENDS.names(), *RESERVED], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        findings.append(
            Finding(
                column,
                (),
                (
                    f"unknown column: no front end '{column}' is registered{hint}, and it is not "
                    f"id, label or split; set data.paired.ignore_columns=[{column}] to leave it "
                    f"unread, or register a front end '{column}' (a plugin; --set plugins=[module])"
                ),
            )
        )
    return findings


def _empty_ids(manifest: Manifest) -> list[Finding]:
    """Rows of a manifest with an ``id`` column whose id is empty or absent (a JSONL key)."""
    if "id" not in manifest.columns:
        return []
    empty = [n for n, row in enumerate(manifest.rows, start=1) if not row.get("id")]
    if not empty:
        return []
    return [
        Finding(
            "id",
            tuple(empty),
            f"empty id in {rows_text(empty)}; give every row a unique id, or remove the id "
            "column (rows are then known by their numbers)",
        )
    ]


def _one_file_in_two_columns(files: dict[str, dict[int, tuple[str, str]]]) -> list[Finding]:
    """Rows whose cells of two columns resolve to one file.

    A finding per pair of columns, on the later column, naming the earlier one.
    """
    by_pair: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    rows = sorted({n for cells in files.values() for n in cells})
    for number in rows:
        first: dict[str, str] = {}  # resolved path -> the first column holding it
        for column, cells in files.items():
            if number not in cells:
                continue
            cell, path = cells[number]
            if path in first:
                by_pair.setdefault((first[path], column), []).append((number, cell, path))
            else:
                first[path] = column
    findings = []
    for (earlier, column), found in by_pair.items():
        listed = [f"row {n}: '{cell}' -> {path}" for n, cell, path in found]
        numbers = [n for n, _, _ in found]
        findings.append(
            Finding(
                column,
                tuple(numbers),
                f"the same file as column '{earlier}' in {rows_text(numbers)} "
                f"({_first(listed, 'rows')}); one file is not two modalities: give each column "
                "its own modality's file (data.paired.allow_duplicates does not allow this)",
            )
        )
    return findings


def _duplicate_ids(manifest: Manifest) -> list[Finding]:
    if "id" not in manifest.columns:
        return []
    by_id: dict[str, list[int]] = {}
    for number, row in enumerate(manifest.rows, start=1):
        if cell := row.get("id"):
            by_id.setdefault(cell, []).append(number)
    repeated = {cell: rows for cell, rows in by_id.items() if len(rows) > 1}
    if not repeated:
        return []
    listed = [f"{cell!r} in {rows_text(rows)}" for cell, rows in repeated.items()]
    return [
        Finding(
            "id",
            tuple(sorted(n for rows in repeated.values() for n in rows)),
            f"ids repeat: {_first(listed, 'ids')}; ids must be unique: rename or remove "
            "the repeated rows",
        )
    ]


def _resolved_files(manifest: Manifest, skip: set[str]) -> dict[str, dict[int, tuple[str, str]]]:
    """``{column: {row: (cell, resolved path)}}`` of the modality columns not in ``skip``.

    Every non-empty cell, resolved as ``Path.resolve`` would (symbolic links followed), with
    each folder resolved once and one ``lstat`` per file (no file is read).
    """
    base = str(manifest.path.parent)
    folders: dict[str, str] = {}

    def resolved(cell: str) -> str:
        given = os.path.expanduser(cell)
        full = given if os.path.isabs(given) else os.path.join(base, given)
        head, name = os.path.split(full)
        if name in ("", ".", ".."):
            return os.path.realpath(full)
        if head not in folders:
            folders[head] = os.path.realpath(head)
        path = os.path.join(folders[head], name)
        return os.path.realpath(path) if os.path.islink(path) else path

    files: dict[str, dict[int, tuple[str, str]]] = {}
    for column in (c for c in manifest.modalities if c not in skip):
        cells = files.setdefault(column, {})
        for number, row in enumerate(manifest.rows, start=1):
            cell = row.get(column)
            if not cell:
                continue
            try:
                cells[number] = (cell, resolved(cell))
            except (OSError, ValueError):  # a NUL byte: the validation pass reports the file
                continue
    return files


def _outside(manifest: Manifest, files: dict[str, dict[int, tuple[str, str]]]) -> list[Finding]:
    folder = os.path.realpath(manifest.path.parent)
    inside = folder.rstrip(os.sep) + os.sep
    findings = []
    for column, cells in files.items():
        outside = [
            (n, cell, path) for n, (cell, path) in cells.items() if not path.startswith(inside)
        ]
        if not outside:
            continue
        number, cell, path = outside[0]
        also = f" (also {rows_text([n for n, _, _ in outside[1:]])})" if len(outside) > 1 else ""
        findings.append(
            Finding(
                column,
                tuple(n for n, _, _ in outside),
                (
                    f"row {number}'s '{cell}' resolves to {path}, outside the manifest's "
                    f"folder {folder}{also}; keep the files inside it, or set "
                    "data.paired.allow_outside=true"
                ),
            )
        )
    return findings


def _rows_by_file(files: dict[str, dict[int, tuple[str, str]]]) -> dict[str, dict[str, list[int]]]:
    by_file: dict[str, dict[str, list[int]]] = {}
    for column, cells in files.items():
        by_path = by_file.setdefault(column, {})
        for number, (_, path) in cells.items():
            by_path.setdefault(path, []).append(number)
    return by_file


def _connected(groups: list[list[int]]) -> list[list[int]]:
    """Rows linked by sharing any file (in any column), as groups of row numbers."""
    parent: dict[int, int] = {}

    def root(n: int) -> int:
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for rows in groups:
        for n in rows[1:]:
            parent[root(n)] = root(rows[0])
    linked: dict[int, list[int]] = {}
    for n in parent:
        linked.setdefault(root(n), []).append(n)
    return [sorted(rows) for rows in linked.values()]


def _duplicate_files(
    column: str, by_path: dict[str, list[int]], splits: list[str | None], allowed: bool
) -> list[Finding]:
    def described(path: str, rows: list[int]) -> str:
        used = [splits[n - 1] for n in rows]
        if len({s for s in used if s}) > 1:
            return f"{path} in " + ", ".join(
                f"row {n} ({s or 'no split'})" for n, s in zip(rows, used, strict=True)
            )
        return f"{path} in {rows_text(rows)}"

    parted = {
        p: rows
        for p, rows in by_path.items()
        if len({splits[n - 1] for n in rows if splits[n - 1]}) > 1
    }
    findings = []
    if not allowed:
        listed = [described(p, rows) for p, rows in by_path.items()]
        leak = "; in different splits, test samples would be trained on" if parted else ""
        findings.append(
            Finding(
                column,
                _all(by_path),
                (
                    f"the same file in several rows: {_first(listed, 'files')}{leak}; remove "
                    "the repeated rows, or set data.paired.allow_duplicates=true to keep them "
                    "(they then share one split)"
                ),
            )
        )
        return findings
    if parted:
        listed = [described(p, rows) for p, rows in parted.items()]
        findings.append(
            Finding(
                column,
                _all(parted),
                (
                    f"rows of different splits share a file: {_first(listed, 'files')}; test "
                    "samples would be trained on, even with data.paired.allow_duplicates=true: "
                    "give rows that share a file the same split cell"
                ),
            )
        )
    kept = {p: rows for p, rows in by_path.items() if p not in parted}
    if kept:
        listed = [described(p, rows) for p, rows in kept.items()]
        findings.append(
            Finding(
                column,
                _all(kept),
                (
                    "the same file in several rows, kept (data.paired.allow_duplicates=true) in "
                    f"one split: {_first(listed, 'files')}"
                ),
                warning=True,
            )
        )
    return findings


def _all(by_path: dict[str, list[int]]) -> tuple[int, ...]:
    return tuple(sorted(n for rows in by_path.values() for n in rows))


def _first(listed: list[str], noun: str) -> str:
    """The first :data:`EXAMPLES` items, ``; ``-separated, then ``and N more ids``."""
    shown = "; ".join(listed[:EXAMPLES])
    return shown + (f"; and {len(listed) - EXAMPLES} more {noun}" if len(listed) > EXAMPLES else "")
