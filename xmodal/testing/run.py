"""Running the contract checks: on one component, on a package's components, or on a target.

A component is ``(kind, name)``: a registry kind (``frontends``, ``backbones``, ``methods``,
``probes``, ``datasets``, ``stages``, ``pipelines``) and its registered name. A package's
components are the entry points its installed distribution declares in xmodal's groups.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import torch

from xmodal.core.errors import XmodalError
from xmodal.core.registry import REGISTRIES, Registry, UnknownNameError
from xmodal.testing.checks import CHECKS, ContractError, Skipped

KINDS = tuple(k for k in REGISTRIES if k in CHECKS)
"""The kinds that have checks, in the order ``xmodal list`` prints them."""

Status = Literal["ok", "failed", "skipped"]


@dataclass
class CheckResult:
    """The verdict of one check on one component.

    Attributes:
        kind, name: the component (registry kind and name).
        package: the distribution that provides it (``xmodal`` for built-ins).
        check: the check's name (``load`` when the component could not be loaded).
        status: ``ok``, ``failed`` or ``skipped`` (the check does not apply).
        reason: one line: what failed, or why it was skipped.
        error: the exception of a failed check.
    """

    kind: str
    name: str
    package: str
    check: str
    status: Status
    reason: str = ""
    error: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True unless the check failed."""
        return self.status != "failed"


def normalise_kind(kind: str) -> str:
    """``frontends``, ``frontend`` or ``modality`` -> ``frontends`` (any kind, plural or not)."""
    for plural, registry in REGISTRIES.items():
        if kind in (plural, registry.singular, plural.rstrip("s")):
            if plural not in CHECKS:
                break
            return plural
    close = difflib.get_close_matches(kind, KINDS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownNameError(f"unknown kind '{kind}': {hint}kinds: {', '.join(KINDS)}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not isinstance(exc, (AssertionError, XmodalError)) or not text:  # those say it all
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _same_package(a: str, b: str) -> bool:
    """Distribution names compare as pip compares them (``My_Pkg`` is ``my-pkg``)."""
    return re.sub(r"[-_.]+", "-", a).lower() == re.sub(r"[-_.]+", "-", b).lower()


def _package(registry: Registry[Any], name: str) -> str:
    """The package declaring ``name`` by an entry point, else the registry's answer, else ``?``."""
    for dist, found in _declared().items():
        if (registry.kind, name) in found:
            return dist
    try:
        return registry.package(name)
    except Exception:  # not loadable: the load check says why
        return "?"


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """One intra-op thread (tiny tensors) and the caller's RNG left as it was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


def run_checks(
    kind: str, name: str, checks: Iterable[str] | str | None = None
) -> list[CheckResult]:
    """Run the checks of ``kind`` on component ``name``; one result per check, none raised.

    Args:
        kind: the registry kind (``frontends``, ``backbones``, ...; singular also works).
        name: the registered name.
        checks: the names of the checks to run (default: all of the kind's, in order).

    Returns:
        The results; a component that cannot be loaded gives one failed ``load`` result.
    """
    kind = normalise_kind(kind)
    registry = REGISTRIES[kind]
    chosen = CHECKS[kind]
    if checks is not None:
        wanted = [checks] if isinstance(checks, str) else list(checks)
        known = [c.name for c in chosen]
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise ValueError(f"{kind} have no check {unknown}; their checks: {', '.join(known)}")
        chosen = tuple(c for c in chosen if c.name in wanted)
    try:
        entry, failure = registry.get(name), None
    except Exception as exc:  # an unknown name, or a plugin that fails to import or breaks
        entry, failure = None, exc
    package = _package(registry, name)

    def result(check: str, status: Status, exc: BaseException | None = None) -> CheckResult:
        reason = "" if exc is None else str(exc) if status == "skipped" else _one_line(exc)
        return CheckResult(kind, name, package, check, status, reason, exc)

    if failure is not None:
        return [result("load", "failed", failure)]
    results = []
    with _isolated():
        for check in chosen:
            try:
                check.run(name, entry)
            except Skipped as skip:
                results.append(result(check.name, "skipped", skip))
            except Exception as exc:
                results.append(result(check.name, "failed", exc))
            else:
                results.append(result(check.name, "ok"))
    return results


def check_component(
    kind: str, name: str, checks: Iterable[str] | str | None = None
) -> list[CheckResult]:
    """Run every contract check of ``kind`` on component ``name``; raise if one fails.

    Modelled on scikit-learn's ``check_estimator``: the checks the built-ins pass, run on any
    component. Example: ``check_component("frontends", "imu")``.

    Args:
        kind: the registry kind (``frontends``, ``backbones``, ``methods``, ``probes``,
            ``datasets``, ``stages``, ``pipelines``; singular also works).
        name: the registered name.
        checks: only these checks (by name; default: all of the kind's).

    Returns:
        The results (every one ok or skipped).

    Raises:
        ContractError: an ``AssertionError`` naming the component, its package and each
            failed check with its reason, raised from the first failure's exception.
    """
    results = run_checks(kind, name, checks)
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        raise ContractError(
            f"{first.kind} '{name}' from package '{first.package}' fails "
            + "; ".join(f"'{r.check}': {r.reason}" for r in failed)
            + f" (see 'xmodal check {first.kind}:{name}')"
        ) from first.error
    return results


def _groups() -> dict[str, str]:
    """``{entry-point group: kind}`` of the kinds with checks, former group names included."""
    groups = {}
    for kind in KINDS:
        registry = REGISTRIES[kind]
        for group in (registry.entry_point_group, *getattr(registry, "_legacy_groups", ())):
            if group:
                groups[group] = kind
    return groups


def _declared() -> dict[str, list[tuple[str, str]]]:
    """``{distribution: [(kind, name), ...]}`` of every entry point in xmodal's groups."""
    groups = _groups()
    found: dict[str, list[tuple[str, str]]] = {}
    for group, kind in groups.items():
        for ep in metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            package = str(dist.name) if dist is not None else "?"
            if (kind, ep.name) not in found.setdefault(package, []):
                found[package].append((kind, ep.name))
    return found


def installed_packages() -> list[str]:
    """The installed distributions that declare components in xmodal's entry-point groups."""
    return sorted(_declared())


def components(
    package: str | None = None, kinds: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """The components ``(kind, name)`` of ``package``, or of every registry when None.

    A package's components are the entry points its installed distribution declares in
    xmodal's groups (``xmodal.frontends``, ...); for ``xmodal`` itself, the built-ins.

    Args:
        package: a distribution name (``xmodal-imu``; ``-``, ``_`` and case do not matter).
        kinds: only these kinds (default: every kind with checks).

    Raises:
        XmodalError: no such distribution is installed, or it declares no component.
    """
    wanted = [normalise_kind(k) for k in kinds] if kinds is not None else list(KINDS)
    if package is None:
        return [(k, n) for k in wanted for n in REGISTRIES[k].names()]
    declared = next((v for d, v in _declared().items() if _same_package(d, package)), [])
    if not declared and _same_package(package, "xmodal"):  # built-ins registered in code
        declared = [
            (k, n)
            for k in KINDS
            for n in REGISTRIES[k].names()
            if REGISTRIES[k].package(n) == "xmodal"
        ]
    if not declared:
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise XmodalError(_unknown(package)) from None
        raise XmodalError(
            f"package '{package}' declares no component in xmodal's entry-point groups "
            f"({', '.join(sorted(_groups()))})"
        )
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted((c for c in declared if c[0] in wanted), key=lambda c: (order[c[0]], c[1]))


def _unknown(target: str) -> str:
    names = [n for k in KINDS for n in REGISTRIES[k].names()] + installed_packages()
    close = difflib.get_close_matches(target, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return (
        f"'{target}' is no installed package with xmodal components and no registered component: "
        f"{hint}give a package (see 'pip list'), KIND:NAME or a name from 'xmodal list'"
    )


def _known(kind: str, name: str) -> bool:
    """Whether ``name`` is declared by an entry point, or else registered.

    The entry points are read first, so that a plugin that breaks is found without loading it
    (then checked, and reported, like any other).
    """
    if any((kind, name) in found for found in _declared().values()):
        return True
    try:
        return name in REGISTRIES[kind]
    except XmodalError:  # another plugin of the kind fails to load
        return False


def resolve(target: str) -> list[tuple[str, str]]:
    """The components ``xmodal check TARGET`` checks.

    ``KIND:NAME`` (``frontends:imu``); an installed package that declares components
    (``xmodal-imu``, or ``xmodal`` for the built-ins); or a name registered in one kind only.

    Raises:
        XmodalError: an unknown target (with close matches) or a name of several kinds.
    """
    if ":" in target:
        kind, _, name = target.partition(":")
        kind = normalise_kind(kind)
        if not _known(kind, name):
            REGISTRIES[kind].get(name)  # raises UnknownNameError, with close matches
        return [(kind, name)]
    packages = installed_packages()
    if any(_same_package(p, target) for p in packages) or _same_package(target, "xmodal"):
        return components(target)
    kinds = [k for k in KINDS if _known(k, target)]
    if len(kinds) > 1:
        raise XmodalError(
            f"'{target}' names a component of several kinds; say which: "
            + ", ".join(f"{k}:{target}" for k in kinds)
        )
    if not kinds:
        raise XmodalError(_unknown(target))
    return [(kinds[0], target)]
