"""One validation style for every options dataclass.

``require(self, {field: rule})`` in ``__post_init__`` raises one ``ValueError``
(:class:`InvalidOptions`) naming every field that breaks its rule; loading a config names each
by its full key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any

#: a predicate on a field's value and the requirement it states, e.g.
#: ``(lambda v: v > 0, "> 0")``
Rule = tuple[Callable[[Any], bool], str]


class InvalidOptions(ValueError):
    """Options that break their rules; ``problems`` lists each ``(field, value, need)``.

    Its message is ``Options: invalid field=value (must be need); ...``; a config loader
    rewrites it with each field's full key (:func:`~xmodal.core.config.from_dict`).
    """

    def __init__(self, owner: str, problems: list[tuple[str, Any, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"{name}={value!r} (must be {need})" for name, value, need in problems)
        super().__init__(f"{owner}: invalid {shown}")


def require(options: Any, rules: dict[str, Rule]) -> None:
    """Raise :class:`InvalidOptions` listing each ``field=value (must be ...)`` that fails."""
    bad = []
    for name, (ok, need) in rules.items():
        value = getattr(options, name)
        try:
            passed = bool(ok(value))
        except TypeError:  # a value of the wrong type breaks its rule, it does not crash
            passed = False
        if not passed:
            bad.append((name, value, need))
    if bad:
        raise InvalidOptions(type(options).__name__, bad)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_ints(owner: str, *checks: tuple[str, Any, int]) -> None:
    """Raise ``ValueError`` at the first ``(name, value, low)`` whose value is no int >= ``low``.

    For constructor arguments (sizes, seeds): ``"{owner}: {name} must be an int >= {low}, got
    {value!r}"``. A bool is no int here.
    """
    for name, value, low in checks:
        if not (_integer(value) and value >= low):
            raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")


def positive() -> Rule:
    """A finite number > 0."""
    return (lambda v: _number(v) and v > 0), "a finite number > 0"


def non_negative() -> Rule:
    """A finite number >= 0."""
    return (lambda v: _number(v) and v >= 0), "a finite number >= 0"


def at_least(low: int) -> Rule:
    """An integer >= ``low``."""
    return (lambda v: _integer(v) and v >= low), f"an integer >= {low}"


def within(low: float, high: float, *, high_open: bool = False, low_open: bool = False) -> Rule:
    """A finite number between ``low`` and ``high`` (each end closed unless ``*_open``)."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def ok(v: Any) -> bool:
        return (
            _number(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )

    return ok, f"in {left}{low}, {high}{right}"


def one_of(choices: Iterable[Any]) -> Rule:
    """One of ``choices``."""
    allowed = tuple(choices)
    return (lambda v: v in allowed), "one of " + ", ".join(repr(c) for c in allowed)


def holds(condition: bool, need: str) -> Rule:
    """A rule decided already (a relation between fields)."""
    return (lambda v: condition), need


def literal_rules(options: Any) -> dict[str, Rule]:
    """A :func:`one_of` rule for every ``Literal[...]`` field of a dataclass.

    So that building options in code is checked like loading them from a config.
    """
    hints = typing.get_type_hints(type(options))
    return {
        f.name: one_of(typing.get_args(hints[f.name]))
        for f in dataclasses.fields(options)
        if typing.get_origin(hints[f.name]) is typing.Literal
    }


def each(rule: Rule, *, increasing: bool = False) -> Rule:
    """A non-empty list whose every item keeps ``rule`` (and, with ``increasing``, is sorted)."""
    ok, need = rule

    def check(v: Any) -> bool:
        items = list(v)
        return (
            bool(items) and all(ok(x) for x in items) and (not increasing or items == sorted(items))
        )

    return check, f"a non-empty{' increasing' if increasing else ''} list, each item {need}"
