"""The class list of a manifest and each row's label.

A ``label`` column holds class names or integer indices, not both (:func:`mixed_labels`: a
mix is an error naming the rows). With ``data.paired.classes`` given, a cell must be one of those
names or an index into them. Without it, integer labels give classes ``0..max``, and names give
their sorted list.
"""

from __future__ import annotations

from dataclasses import dataclass

from xmodal.data.paired.manifest import Manifest
from xmodal.data.paired.problems import Finding, Problem, rows_text


@dataclass
class Labels:
    """A manifest's classes and each row's label.

    Attributes:
        class_names: index = label.
        values: one label per manifest row; ``None`` where the row has a label problem.
    """

    class_names: list[str]
    values: list[int | None]


def _integer(cell: str) -> int | None:
    try:
        return int(cell)
    except ValueError:
        return None


def resolve_labels(manifest: Manifest, classes: list[str]) -> tuple[Labels | None, list[Problem]]:
    """The manifest's labels (None without a ``label`` column) and the rows with bad ones.

    A label is bad when it is empty or outside the class list.
    """
    if not manifest.labelled:
        return None, []
    cells = [row.get("label") for row in manifest.rows]
    problems = [
        Problem(i + 1, "label", "no label (empty cell)") for i, cell in enumerate(cells) if not cell
    ]
    given = [cell for cell in cells if cell]
    if classes:
        names = list(classes)
        index = {name: i for i, name in enumerate(names)}
    elif given and None not in (integers := [_integer(cell) for cell in given]):
        top = max(i for i in integers if i is not None)
        names = [str(i) for i in range(max(top, 0) + 1)]
        index = {}
    else:
        names = sorted(set(given))
        index = {name: i for i, name in enumerate(names)}
    values: list[int | None] = []
    for i, cell in enumerate(cells):
        if not cell:
            values.append(None)
            continue
        number = index.get(cell, _integer(cell) if not index or classes else None)
        if number is None or not 0 <= number < len(names):
            what = (
                f"label {cell!r} is not in the class list (data.paired.classes: "
                f"{_listed(names)}) nor an index 0..{len(names) - 1}"
                if classes
                else f"label {cell!r} is negative: integer labels count classes from 0"
            )
            problems.append(Problem(i + 1, "label", what))
            values.append(None)
        else:
            values.append(number)
    return Labels(names, values), problems


def mixed_labels(manifest: Manifest, classes: list[str]) -> Finding | None:
    """The error of a ``label`` column mixing class names and integers (``cat``, ``1``).

    Mixed, ``1`` would count as a class of its own. None when all are of one kind. A cell
    equal to a name in ``classes`` counts as a name even when it looks like an integer.
    """
    if not manifest.labelled:
        return None
    named = set(classes)
    names: list[tuple[int, str]] = []
    integers: list[tuple[int, str]] = []
    for number, row in enumerate(manifest.rows, start=1):
        cell = row.get("label")
        if cell:
            kind = names if cell in named or _integer(cell) is None else integers
            kind.append((number, cell))
    if not names or not integers:
        return None
    fewer = min(names, integers, key=len)
    return Finding(
        "label",
        tuple(n for n, _ in fewer),
        f"labels mix class names ({_examples(names)}) and integers "
        f"({_examples(integers)}); write every label as a class name, or every one "
        "as an integer index from 0",
    )


def _examples(cells: list[tuple[int, str]], limit: int = 3) -> str:
    """``rows 1, 3: 'cat', 'dog'`` (the first ``limit`` values)."""
    values = ", ".join(repr(cell) for _, cell in cells[:limit])
    return f"{rows_text([n for n, _ in cells])}: {values}{', ...' if len(cells) > limit else ''}"


def _listed(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} names)" if len(names) > limit else "")
