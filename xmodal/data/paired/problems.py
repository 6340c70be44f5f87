"""What is wrong with a manifest's rows, and with the manifest as a whole.

A :class:`Problem` per (row, column), and the summary that lists them one per line; a
:class:`Finding` per manifest-wide rule broken (see :mod:`.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: how many problems a summary lists before "... and N more"
LISTED = 20

ROW_NUMBERS = "rows count data rows from 1, the header line excluded"


@dataclass(frozen=True)
class Problem:
    """What is wrong with one cell of a manifest.

    Attributes:
        row: the row's number in the manifest, counted from 1 over data rows (a CSV's header
            line is not a row; a JSONL file's blank lines are skipped).
        column: the manifest column, e.g. ``rgb`` or ``label``.
        message: what is wrong, e.g. ``missing file 'img/4.png'``.
    """

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.message}"


@dataclass(frozen=True)
class Finding:
    """A manifest-wide rule that some rows or a column break.

    Duplicate or empty ids, a file in two rows or in two columns of a row, mixed label kinds,
    an unknown column, a path outside the manifest's folder: leaving rows out does not fix it,
    so it stops preprocessing whatever ``on_bad_sample`` says.

    Attributes:
        column: the manifest column, e.g. ``id``.
        rows: the rows concerned (from 1), empty when the column itself is wrong.
        message: one line saying what is wrong, in which rows, and the fix (the option to set).
        warning: allowed by an option (``allow_duplicates``): reported, not an error.
    """

    column: str
    rows: tuple[int, ...]
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"column '{self.column}': {self.message}"


def rows_text(numbers: list[int] | tuple[int, ...], limit: int = 8) -> str:
    """``[3, 1]`` -> ``"rows 1, 3"``; past ``limit`` rows, ``"rows 1, 2, ... (30 rows)"``."""
    ordered = sorted(numbers)
    shown = ", ".join(map(str, ordered[:limit]))
    more = f", ... ({len(ordered)} rows)" if len(ordered) > limit else ""
    return f"{'row' if len(ordered) == 1 else 'rows'} {shown}{more}"


def summarise(problems: list[Problem], limit: int = LISTED) -> list[str]:
    """One line per problem (the first ``limit``, in row order), then ``and N more``."""
    ordered = sorted(problems, key=lambda p: p.row)
    lines = [str(p) for p in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"and {len(ordered) - limit} more")
    return lines


def bad_rows(problems: list[Problem]) -> list[int]:
    """The sorted row numbers that have at least one problem."""
    return sorted({p.row for p in problems})
