"""Aggregate probe rows over seeds: mean, standard deviation and the gap a method closes.

The gap is the one from the floor (``none``) to the reference (``supervised``).
"""

from __future__ import annotations

import statistics
from typing import Any

KEY = ("modality", "method", "probe", "metric")


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (modality, method, probe, metric), over seeds.

    Each row has ``mean``, ``std`` (sample, 0 for one seed), ``n`` seeds, ``values``, and
    ``gap_closed`` where a ``none`` and a ``supervised`` row exist for the same
    modality/probe/metric: ``(method - none) / (supervised - none)`` on the means.
    """
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in KEY), []).append(float(row["value"]))
    summary = []
    for key, values in groups.items():
        entry = dict(zip(KEY, key, strict=True))
        entry.update(
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else 0.0,
            n=len(values),
            values=values,
        )
        summary.append(entry)
    means = {tuple(e[k] for k in KEY): e["mean"] for e in summary}
    for entry in summary:
        floor = means.get((entry["modality"], "none", entry["probe"], entry["metric"]))
        top = means.get((entry["modality"], "supervised", entry["probe"], entry["metric"]))
        gap = None
        if floor is not None and top is not None and top - floor > 1e-12:
            gap = (entry["mean"] - floor) / (top - floor)
        entry["gap_closed"] = gap
    return summary


def gap_closed_per_seed(
    rows: list[dict[str, Any]],
    modality: str,
    method: str,
    probe: str = "linear",
    metric: str = "accuracy",
) -> dict[int, float | None]:
    """The gap-closed ratio computed seed by seed (each seed's own floor and reference)."""
    by_seed: dict[int, dict[str, float]] = {}
    for row in rows:
        if (row["modality"], row["probe"], row["metric"]) == (modality, probe, metric):
            by_seed.setdefault(row["seed"], {})[row["method"]] = float(row["value"])
    out: dict[int, float | None] = {}
    for seed, values in sorted(by_seed.items()):
        floor, top, value = values.get("none"), values.get("supervised"), values.get(method)
        ok = None not in (floor, top, value) and top - floor > 1e-12  # type: ignore[operator]
        out[seed] = (value - floor) / (top - floor) if ok else None  # type: ignore[operator]
    return out
