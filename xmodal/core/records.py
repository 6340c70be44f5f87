"""Machine-readable results: JSON, and CSV from a list of flat-ish rows, both written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xmodal.core.cache import write_text_atomic


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (see :mod:`xmodal.core.cache`)."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write one CSV row per dict, atomically.

    Columns are the union of keys in first-seen order; nested values (dicts, lists) are
    written as JSON.
    """
    fields = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    if fields:
        writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}
        )
    return write_text_atomic(path, text.getvalue())
