"""A reader of the ``.ts`` time-series archive format (UEA/UCR archives, sktime, aeon).

A ``.ts`` file is a header of ``@key value`` lines (``#`` starts a comment), then ``@data``
and one case per line: each dimension's values separated by commas, dimensions separated by
colons, and the class label last when ``@classLabel true``. The UEA multivariate archive is
in this format: many of its problems are several sensors recorded together (an accelerometer
and a gyroscope in ``BasicMotions``, ``RacketSports``, ``ERing``...), i.e. paired modalities.

This reader takes equal-length series with class labels, the form ``paired`` can use; missing
values (``?``), unequal lengths and time stamps are refused with the line and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.core.errors import DataError


@dataclass(frozen=True)
class TsArchive:
    """One ``.ts`` file's cases.

    Attributes:
        values: ``[N, C, T]`` float32, case ``n``'s dimension ``c`` at step ``t``.
        labels: the class label of each case (``N`` strings, as written).
        classes: the class names the header declares, in its order.
        problem: ``@problemName`` ("" when absent).
    """

    values: np.ndarray
    labels: list[str]
    classes: list[str]
    problem: str


def read_ts(path: Path) -> TsArchive:
    """Read a ``.ts`` file of equal-length, labelled series; :class:`DataError` names the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read it as a .ts text file ({error})") from None
    header: dict[str, list[str]] = {}
    cases: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{where}: a header line must start with '@' (before '@data')")
            key, *words = line[1:].split()
            key = key.lower()
            if key == "data":
                _check_header(header, path)
                in_data = True
            else:
                header[key] = words
            continue
        *fields, label = line.split(":")  # _check_header made sure the label is there
        if not fields:
            raise DataError(f"{where}: no class label (expected 'values:...:label')")
        labels.append(label.strip())
        cases.append(_case(fields, where))
    if not in_data:
        raise DataError(f"{path}: no '@data' line; is this a .ts file?")
    if not cases:
        raise DataError(f"{path}: no cases after '@data'")
    shapes = {case.shape for case in cases}
    if len(shapes) > 1:
        first = cases[0].shape
        odd = next(i for i, case in enumerate(cases) if case.shape != first)
        raise DataError(
            f"{path}: case {odd + 1} has [dimensions, length] {list(cases[odd].shape)}, case 1 "
            f"{list(first)}; paired needs one shape per column: cut or pad the series to one "
            "length first (archives often ship an equal-length '_eq' version)"
        )
    classes = header.get("classlabel", ["false"])[1:]
    unknown = sorted(set(labels) - set(classes))
    if classes and unknown:
        raise DataError(f"{path}: labels {unknown} are not among @classLabel {classes}")
    values = np.stack(cases).astype(np.float32)
    return TsArchive(values, labels, classes, " ".join(header.get("problemname", [])))


def _check_header(header: dict[str, list[str]], path: Path) -> None:
    if _flag(header, "timestamps"):
        raise DataError(
            f"{path}: @timeStamps true (series of (time, value) pairs) is not supported; "
            "resample to regular steps and write plain values"
        )
    if not _flag(header, "classlabel"):
        raise DataError(
            f"{path}: @classLabel is not true; paired probes need class labels "
            "(a regression archive with @targetLabel is not supported)"
        )


def _flag(header: dict[str, list[str]], key: str) -> bool:
    return bool(header.get(key)) and header[key][0].lower() == "true"


def _case(fields: list[str], where: str) -> np.ndarray:
    """``["v,v,...", ...]`` (one string per dimension) -> ``[C, T]`` float64."""
    rows = []
    for dimension, field in enumerate(fields, start=1):
        cells = field.split(",")
        if "?" in (cell.strip() for cell in cells):
            raise DataError(
                f"{where}: dimension {dimension} has missing values ('?'); fill or "
                "interpolate them first (paired refuses non-finite samples)"
            )
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise DataError(
                f"{where}: dimension {dimension}: {bad.strip()!r} is not a number"
            ) from None
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise DataError(
            f"{where}: its dimensions have different lengths {[len(r) for r in rows]}; "
            "every dimension of a case must have the same length"
        )
    array = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"{where}: non-finite values (nan or inf); fill them first")
    return array


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
