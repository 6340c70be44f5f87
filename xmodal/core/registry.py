"""Named registries for every pluggable kind (encoders, losses, datasets, probes, pipelines).

A registry maps a name to a factory. Built-in entries register themselves with a decorator;
installed packages add entries through an entry-point group (``xmodal.encoders`` etc.), loaded
lazily on the first lookup. An unknown name raises with close-match suggestions; registering
a name twice raises instead of silently overwriting (torchdistill's weak spot).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from xmodal.core.errors import XmodalError

T = TypeVar("T")


class UnknownNameError(XmodalError, KeyError):
    """An unknown registry name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to entries of one kind, extendable through entry points.

    Args:
        kind: plural noun used in messages, e.g. ``"encoders"``.
        entry_point_group: the ``importlib.metadata`` group scanned on first lookup,
            e.g. ``"xmodal.encoders"``; each entry point's name is the registry name and its
            object is the entry.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, noun: str = "") -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._noun = noun
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._packages: dict[str, str] = {}
        self._plugins_loaded = entry_point_group is None

    @property
    def singular(self) -> str:
        """The noun for one entry in messages: ``noun`` if given (``"losses"`` -> ``"method"``),
        else ``"encoders"`` -> ``"encoder"``, ``"modalities"`` -> ``"modality"``,
        ``"classes"`` -> ``"class"``."""
        if self._noun:
            return self._noun
        if self.kind.endswith("ies"):
            return self.kind[:-3] + "y"
        if self.kind.endswith(("sses", "xes", "ches", "shes")):
            return self.kind[:-2]
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator: ``@ENCODERS.register("resnet8")`` above a factory or class."""

        def decorator(entry: T) -> T:
            self.add(name, entry, description)
            return entry

        return decorator

    def add(self, name: str, entry: T, description: str = "", package: str = "") -> None:
        """Register ``entry`` under ``name``; raises if the name is taken. ``package``: the
        distribution providing it (default: from the entry's module, ``xmodal`` for built-ins)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind}: a registry name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise XmodalError(
                f"{self.kind}: '{name}' is already registered (by {_origin(self._entries[name])}); "
                "choose another name"
            )
        self._entries[name] = entry
        self._descriptions[name] = one_line(description or getattr(entry, "__doc__", None) or "")
        module = getattr(entry, "__module__", None) or type(entry).__module__
        self._packages[name] = package or module.partition(".")[0]

    def get(self, name: str) -> T:
        """The entry registered as ``name``; unknown names raise :class:`UnknownNameError`."""
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownNameError(
                f"unknown {self.singular} '{name}': "
                f"{hint}available: {', '.join(sorted(self._entries)) or '(none)'}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard, e.g. ``"resnet*"``."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def describe(self, name: str) -> str:
        """One plain-text sentence describing ``name`` (from its docstring or registration)."""
        self.get(name)
        return self._descriptions.get(name, "")

    def package(self, name: str) -> str:
        """The distribution that provides ``name`` (``xmodal`` for built-ins)."""
        self.get(name)
        return self._packages.get(name, "")

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # set first: a failing plugin must not be retried forever
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                entry = ep.load()
            except Exception as exc:  # a broken plugin must name itself, not crash every lookup
                raise XmodalError(
                    f"{self.kind}: plugin '{ep.name}' ({ep.value}) from entry-point group "
                    f"'{self.entry_point_group}' failed to load: {exc}; fix or uninstall that package"
                ) from exc
            dist = getattr(ep, "dist", None)  # the installed distribution that declared it
            self.add(ep.name, entry, package=dist.name if dist is not None else "")


def _origin(entry: object) -> str:
    module = getattr(entry, "__module__", None)
    qual = getattr(entry, "__qualname__", type(entry).__name__)
    return f"{module}.{qual}" if module else str(qual)


_ROLE = re.compile(r":[a-z]+:`~?([^`]*)`")  # :class:`~pkg.mod.Name` -> pkg.mod.Name
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!etc)(?<! al)[.!?](?=\s|$)")


def one_line(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, in plain text
    (reST roles and double backticks removed)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], paragraph).replace("``", "")
    end = _SENTENCE_END.search(text)
    return text[:end.end()] if end else text.rstrip(";,:")
