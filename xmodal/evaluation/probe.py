"""What a registered probe is: a class built from its options that scores frozen features.

:class:`Probe` is the protocol (``docs/plugins.md#probes``); :func:`probe_contract` is the check
a probe plugin passes when it loads; :func:`evaluate_method` names the method a probe is called
through, chosen by its ``consumes_*`` flag.
"""

from __future__ import annotations

from typing import Any, Protocol

from xmodal.core.registry import accepts, signature_of

#: the flag that picks another input, the method it is then called through, and that call:
#: (positional arguments, keywords)
CONSUMES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "consumes_maps": ("evaluate_maps", ("train", "val", "test"), ("num_classes",)),
    "consumes_pairs": ("evaluate_pairs", ("teacher", "student"), ()),
    "consumes_text": (
        "evaluate_zero_shot",
        ("features", "labels", "classes", "heads", "class_names"),
        (),
    ),
}
#: the method of a probe without a ``consumes_*`` flag, and its call
EVALUATE = ("evaluate", ("train", "val", "test"), ("num_classes",))


class Probe(Protocol):
    """A registered probe (``xmodal.probes`` entry point): options in, metrics out.

    Built as ``Probe(options)`` (the options instance from ``probe.<key>``, or None without
    ``options``), once per evaluation. ``evaluate(train, val, test, num_classes=C)`` gets each
    split as ``(features [N, D] float32, labels [N] int64)`` and returns a dict or a dataclass
    holding each of ``metrics`` as a float in [0, 1]. A ``consumes_maps``, ``consumes_pairs``
    or ``consumes_text`` flag set True picks another method instead (:data:`CONSUMES`).
    """

    options: type | None
    metrics: tuple[str, ...]

    def evaluate(
        self, train: tuple[Any, Any], val: tuple[Any, Any], test: tuple[Any, Any], num_classes: int
    ) -> Any:
        """Fit on ``train`` (choosing settings on ``val``) and score ``test``."""
        ...


def evaluate_method(entry: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The method probe class ``entry`` is called through, and that call's arguments.

    ``(method, positional, keywords)``: that of its first ``consumes_*`` flag set True, else
    ``evaluate``'s.
    """
    for flag, call in CONSUMES.items():
        if getattr(entry, flag, False) is True:
            return call
    return EVALUATE


def probe_contract(name: str, entry: Any) -> None:
    """Check a probe class against :class:`Probe`, from its class alone (nothing built or fit).

    A class built as ``Cls(options)``; its ``consumes_*`` flags bools, at most one set; the
    method they pick callable as xmodal calls it; ``metrics``, if present, a non-empty tuple of
    names.

    Raises:
        TypeError: a member of the wrong kind, or a method that cannot take xmodal's call.
        ValueError: flags that contradict each other, or empty metrics; each message says what
            to change.
    """
    if not isinstance(entry, type):
        raise TypeError(f"probe '{name}' must be a class, built as Cls(options), got {entry!r}")
    if not accepts(entry, "__init__", 1):
        raise TypeError(
            f"probe '{name}' must be built as {entry.__name__}(options) (one positional "
            f"argument: its options, or None without options), but its constructor takes "
            f"{signature_of(entry, '__init__')}"
        )
    flags = {flag: getattr(entry, flag, False) for flag in CONSUMES}
    wrong = {flag: value for flag, value in flags.items() if not isinstance(value, bool)}
    if wrong:
        raise TypeError(f"probe '{name}': {', '.join(wrong)} must be True or False, got {wrong}")
    raised = [flag for flag, value in flags.items() if value]
    if len(raised) > 1:
        raise ValueError(
            f"probe '{name}' sets {' and '.join(raised)}: a probe consumes one kind of input; "
            "set one of them"
        )
    method, positional, keywords = evaluate_method(entry)
    shown = ", ".join([*positional, *(f"{k}=..." for k in keywords)])
    why = f" (it sets {raised[0]} = True)" if raised else ""
    if not callable(getattr(entry, method, None)):
        raise TypeError(f"probe '{name}' has no {method}({shown}) method{why}; add one")
    if not accepts(entry, method, len(positional), keywords):
        raise TypeError(
            f"probe '{name}'.{method} takes {signature_of(entry, method)}, but xmodal calls it "
            f"as {method}({shown}); change its parameters"
        )
    if hasattr(entry, "metrics"):
        metrics = entry.metrics
        if not (
            isinstance(metrics, tuple | list)
            and metrics
            and all(isinstance(m, str) and m for m in metrics)
        ):
            raise TypeError(
                f"probe '{name}'.metrics must be a non-empty tuple of metric names (keys of "
                f"its result), got {metrics!r}"
            )
