"""Component identity: which code computed a cached result.

A cached unit's key names, beside its settings, each component it ran: the distribution that
provides it, that distribution's version and a digest of the component's source module (the
file defining its class or function; for a built-in, xmodal's own module). A new release or an
edited plugin thus changes the key of exactly the units that use it, and
:func:`component_changes` says which component changed, for the line a recomputed unit prints.
Identities are computed once per process.
"""

from __future__ import annotations

import inspect
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from xmodal.core.cache import file_digest
from xmodal.core.registry import OWN_PACKAGE, REGISTRIES

#: the registry kind of each role a unit's ``components`` may name
ROLES = {
    "dataset": "datasets",
    "frontend": "frontends",
    "backbone": "backbones",
    "method": "methods",
    "probe": "probes",
}

_IDENTITIES: dict[tuple[str, str], dict[str, str]] = {}


def component_identity(kind: str, name: str) -> dict[str, str]:
    """``{"name", "package", "version", "source"}`` of registered component ``name`` of ``kind``.

    ``kind`` is a registry kind (``backbones``, ``frontends``, ``methods``, ``probes``,
    ``datasets``...). ``package`` is the distribution providing it (``xmodal`` for built-ins),
    ``version`` that distribution's version (empty when it has no installed metadata, as for a
    module registered in code), ``source`` the 16-hex SHA-256 of its source module's bytes.
    Memoised per process; the entry is loaded if it was not yet.
    """
    found = _IDENTITIES.get((kind, name))
    if found is None:
        registry = REGISTRIES[kind]
        entry = registry.get(name)
        package = registry.package(name)
        found = {
            "name": name,
            "package": package,
            "version": package_version(package),
            "source": source_digest(entry),
        }
        _IDENTITIES[(kind, name)] = found
    return dict(found)


def package_version(package: str) -> str:
    """The installed version of distribution ``package``; xmodal's own ``__version__``.

    Empty when the distribution has no installed metadata.
    """
    if package == OWN_PACKAGE:
        import xmodal

        return str(xmodal.__version__)
    try:
        return str(metadata.version(package))
    except (metadata.PackageNotFoundError, ValueError):
        return ""


def source_file(entry: object) -> Path | None:
    """The file of the module defining ``entry`` (a class, a function, or an instance's class)."""
    module_name = getattr(entry, "__module__", None) or type(entry).__module__
    module = sys.modules.get(str(module_name))
    file = getattr(module, "__file__", None)
    if file is None:
        target = entry if inspect.isclass(entry) or inspect.isroutine(entry) else type(entry)
        try:
            file = inspect.getsourcefile(target)
        except TypeError:  # built into the interpreter
            return None
    path = Path(file) if file else None
    return path if path is not None and path.is_file() else None


def source_digest(entry: object) -> str:
    """Digest of the source module defining ``entry``; ``"unknown"`` when it has no file."""
    path = source_file(entry)
    return file_digest(path) if path is not None else "unknown"


def components(**uses: str) -> dict[str, dict[str, str]]:
    """``{role: identity}`` of the components a unit uses, by role.

    Example: ``components(frontend="depth", backbone="resnet8", method="wcord")``; roles are
    those of :data:`ROLES`.
    """
    return {role: component_identity(ROLES[role], name) for role, name in uses.items()}


def component_changes(before: Any, now: Any) -> list[str]:
    """What changed between two ``components`` mappings (see :func:`components`), one per role.

    A role whose component keeps its name but changed its package, version or source reads e.g.
    ``backbone 'tiny1d' changed (source digest)``; a role given another component (a config
    change) or not in both is left out.
    """
    if not isinstance(before, dict) or not isinstance(now, dict):
        return []
    changes = []
    for role, current in now.items():
        old = before.get(role)
        if not isinstance(old, dict) or not isinstance(current, dict):
            continue
        if old.get("name") != current.get("name") or old == current:
            continue
        what = []
        if old.get("package") != current.get("package"):
            what.append(f"package {old.get('package')!r} -> {current.get('package')!r}")
        elif old.get("version") != current.get("version"):
            what.append(
                f"{current.get('package')} {old.get('version') or '?'} -> "
                f"{current.get('version') or '?'}"
            )
        if old.get("source") != current.get("source"):
            what.append("source digest")
        changes.append(f"{role} '{current.get('name')}' changed ({', '.join(what) or 'identity'})")
    return changes


def changed_components(before: Any, now: dict[str, Any]) -> list[str]:
    """:func:`component_changes` of two units' inputs (their ``components`` entries).

    The ``explain`` of a :class:`~xmodal.core.cache.Unit` whose inputs name the components
    it uses.
    """
    old = before.get("components") if isinstance(before, dict) else None
    return component_changes(old, now.get("components"))
