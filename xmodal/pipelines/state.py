"""What stages hand each other: one typed :class:`StageState`, and the ``stage`` decorator that
declares which of its fields a stage needs and which it produces, so that a pipeline spec whose
stages do not fit together is refused when it is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xmodal.core.registry import STAGES

__all__ = ["StageState", "stage", "check_stage_order"]


@dataclass
class StageState:
    """Attributes:
    dataset_source: the registered dataset object (``preprocess``).
    dataset: its loaded splits, a :class:`~xmodal.data.source.LoadedDataset` (``preprocess``).
    data_key: fingerprint of the prepared data, part of every later cache key (``preprocess``).
    teachers: per seed, the teacher's record with its train-split features and logits (``teacher``).
    models: one record per trained or loaded encoder (``teacher``, ``distill``).
    rows: result rows, one per model x probe x metric x seed (``probe``, ``classify``).
    summary: rows summarised over seeds (``report``).
    """

    dataset_source: Any = None
    dataset: Any = None
    data_key: str | None = None
    teachers: dict[int, dict[str, Any]] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


FIELDS = frozenset(f.name for f in dataclasses.fields(StageState))


def stage(
    name: str,
    description: str,
    *,
    needs: Iterable[str] = (),
    produces: Iterable[str] = (),
    config: Iterable[str] = (),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fn(ctx)`` as stage ``name``, declaring the :class:`StageState` fields it reads
    (``needs``) and writes (``produces``), and the run-config sections it acts on (``config``,
    e.g. ``("teacher",)``: the load-time checks of a section run when a stage acts on it).
    """

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn.needs = frozenset(needs)  # type: ignore[attr-defined]
        fn.produces = frozenset(produces)  # type: ignore[attr-defined]
        fn.config_sections = frozenset(config)  # type: ignore[attr-defined]
        stage_contract(name, fn)
        STAGES.add(name, fn, description)
        return fn

    return decorate


def stage_contract(name: str, entry: Any) -> None:
    """A stage plugin is a callable with ``needs``/``produces`` sets of :class:`StageState` fields."""
    if not callable(entry):
        raise TypeError(f"stage '{name}' must be callable as fn(ctx), got {entry!r}")
    for attribute in ("needs", "produces"):
        value = getattr(entry, attribute, None)
        if not isinstance(value, (set, frozenset)):
            raise TypeError(
                f"stage '{name}' must declare '{attribute}' (a set of StageState "
                "fields); register it with xmodal.pipelines.state.stage"
            )
        unknown = set(value) - FIELDS
        if unknown:
            raise ValueError(
                f"stage '{name}'.{attribute} names {sorted(unknown)}, not fields of "
                f"StageState ({', '.join(sorted(FIELDS))})"
            )


STAGES.contract = stage_contract


def check_stage_order(pipeline: str, stages: list[str]) -> None:
    """Raise ``ValueError`` when a stage needs a field that no earlier stage produces, naming
    the stages that would.
    """
    available: set[str] = set()
    for name in stages:
        fn = STAGES.get(name)
        missing = sorted(fn.needs - available)
        if missing:
            producers = sorted(
                {
                    other
                    for other in STAGES.names()
                    if set(missing) & getattr(STAGES.get(other), "produces", set())
                }
            )
            raise ValueError(
                f"pipeline '{pipeline}': stage '{name}' needs {', '.join(missing)}, "
                f"which no stage before it produces; put "
                f"{' or '.join(repr(p) for p in producers) or 'a stage producing it'} before it"
            )
        available |= fn.produces
