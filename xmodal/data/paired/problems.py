"""What is wrong with one manifest row: a :class:`Problem` per (row, column), and the summary
that lists them one per line."""

from __future__ import annotations

from dataclasses import dataclass

#: how many problems a summary lists before "... and N more"
LISTED = 20

ROW_NUMBERS = "rows count data rows from 1, the header line excluded"


@dataclass(frozen=True)
class Problem:
    """Attributes:
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
