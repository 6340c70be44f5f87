"""The validation pass: every cell of every manifest row is read once before conversion.

Each problem is kept with its row and column (see :mod:`xmodal.data.paired.problems`).

Checked: a row lacking a modality column or with an empty cell, a missing file, a file that
cannot be read or decoded, a wrong shape or channel count (images need 3 channels, depth
PNGs 1 at 16 bits; a ``.npy`` column's rows share the first good row's shape), a label outside
the class list and a split that is not train, val or test. The manifest-wide rules
(:mod:`.rules`: known columns, non-empty unique ids, unique files, one file per column of a
row, paths inside the folder) come first and are kept apart as ``findings``: leaving rows out
does not fix them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmodal.core.errors import DataError
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.labels import Labels, resolve_labels
from xmodal.data.paired.manifest import Manifest
from xmodal.data.paired.problems import Finding, Problem, bad_rows
from xmodal.data.paired.readers import SampleError, expected_shape, reader_for
from xmodal.data.paired.rules import Rules, check_rules


@dataclass
class Validation:
    """What the validation pass found.

    Attributes:
        manifest: the manifest read.
        problems: every problem, with its row and column.
        splits: each row's split (None where its ``split`` cell is bad).
        labels: the class list and each row's label; None for a manifest without labels.
        shapes: each modality's cached shape of one sample; dtypes: its dtype name.
        findings: the manifest-wide rules broken (errors and allowed warnings).
    """

    manifest: Manifest
    problems: list[Problem]
    splits: list[str | None]
    labels: Labels | None
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def bad_rows(self) -> list[int]:
        """Row numbers (from 1) with at least one problem."""
        return bad_rows(self.problems)

    @property
    def good_rows(self) -> list[int]:
        """Row numbers (from 1) without problems, in manifest order."""
        bad = set(self.bad_rows)
        return [r for r in range(1, len(self.manifest.rows) + 1) if r not in bad]


def validate_manifest(
    manifest: Manifest,
    options: PairedOptions,
    progress: Callable[..., None] | None = None,
    rules: Rules | None = None,
) -> Validation:
    """Read every cell once; ``progress(done_rows, total_rows)`` is called after each row.

    ``rules``: the manifest's :func:`~xmodal.data.paired.rules.check_rules`, when already
    checked.
    """
    rules = check_rules(manifest, options) if rules is None else rules
    splits = rules.splits
    labels, label_problems = resolve_labels(manifest, options.classes)
    problems = [*manifest.problems, *rules.split_problems, *label_problems]
    shapes = {m: s for m in manifest.modalities if (s := expected_shape(m, options)) is not None}
    seen: dict[str, dict[tuple[int, ...], list[int]]] = {}  # .npy columns: shape -> rows
    dtypes: dict[str, str] = {}
    total = len(manifest.rows)
    for number in range(1, total + 1):
        for modality in manifest.modalities:
            try:
                array = read_cell(manifest, number, modality, options)
            except SampleError as exc:
                problems.append(Problem(number, modality, str(exc)))
                continue
            dtypes.setdefault(modality, array.dtype.name)
            if modality in shapes and tuple(array.shape) != shapes[modality]:
                problems.append(
                    Problem(
                        number,
                        modality,
                        f"shape {list(array.shape)}; expected {list(shapes[modality])}",
                    )
                )
            elif modality not in shapes:
                seen.setdefault(modality, {}).setdefault(tuple(array.shape), []).append(number)
        if progress is not None:
            progress(number, total)
    for modality, by_shape in seen.items():  # the most common shape is the column's
        shapes[modality] = max(by_shape, key=lambda shape: len(by_shape[shape]))
        problems += [
            Problem(
                number,
                modality,
                f"shape {list(shape)}; most of this column's arrays are {list(shapes[modality])}",
            )
            for shape, numbers in by_shape.items()
            if shape != shapes[modality]
            for number in numbers
        ]
    return Validation(manifest, problems, splits, labels, shapes, dtypes, rules.findings)


def read_cell(manifest: Manifest, number: int, modality: str, options: PairedOptions) -> np.ndarray:
    """The array of row ``number``'s (from 1) ``modality`` cell; SampleError says what is wrong."""
    cell = manifest.rows[number - 1].get(modality)
    if cell is None:
        raise SampleError(f"this row has no '{modality}' column")
    if not cell:
        raise SampleError("empty cell (no file)")
    file = manifest.file(cell)
    if not file.is_file():
        where = "" if file.as_posix() == cell else f", looked for {file}"
        raise SampleError(f"missing file '{cell}'{where}")
    try:
        return reader_for(modality, file)(file, options, number)
    except OSError as exc:  # unreadable: permissions, a folder, an I/O error
        raise SampleError(f"cannot read '{cell}': {exc.strerror or exc}") from None


def read_row(validation: Validation, number: int, options: PairedOptions) -> dict[str, np.ndarray]:
    """Every modality of a row that passed validation, as cached.

    A file changed since the validation pass raises DataError.
    """
    arrays: dict[str, Any] = {}
    for modality in validation.manifest.modalities:
        try:
            array = read_cell(validation.manifest, number, modality, options)
        except SampleError as exc:
            problem = Problem(number, modality, str(exc))
            raise DataError(
                f"manifest '{validation.manifest.path}', {problem} (the file changed "
                "during preprocessing); rerun"
            ) from None
        if tuple(array.shape) != validation.shapes[modality]:
            raise DataError(
                f"manifest '{validation.manifest.path}', row {number}, column "
                f"'{modality}': shape {list(array.shape)}, validated as "
                f"{list(validation.shapes[modality])} (the file changed during "
                "preprocessing); rerun"
            )
        arrays[modality] = array.astype(validation.dtypes[modality], copy=False)
    return arrays
