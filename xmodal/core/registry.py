"""The registries: one per pluggable kind, each a name -> entry mapping extendable by entry points.

Built-in entries register themselves when their layer is imported, which the registry does on
its first lookup, so ``import xmodal`` is enough to list or create anything. Installed packages
add entries through the entry-point group of each kind (``xmodal.methods``, ``xmodal.backbones``,
``xmodal.frontends``, ``xmodal.datasets``, ``xmodal.probes``, ``xmodal.stages``,
``xmodal.pipelines``); a plugin is checked against its kind's contract when it loads. An unknown
name raises with close matches; a name registered twice raises instead of overwriting.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from xmodal.core.errors import XmodalError

T = TypeVar("T")


class UnknownNameError(XmodalError, KeyError):
    """An unknown registry name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to entries of one kind, extendable through entry points.

    Args:
        kind: plural noun used in messages, e.g. ``"backbones"``.
        entry_point_group: the ``importlib.metadata`` group scanned on first lookup,
            e.g. ``"xmodal.backbones"``; each entry point's name is the registry name and its
            object is the entry.
        noun: the singular for messages when it is not the kind minus its plural ending.
        builtins: modules imported on first lookup, which register the built-in entries.
        legacy_groups: older entry-point group names, still scanned.
        contract: checks a plugin's entry when it loads; raises ``ValueError`` or
            ``TypeError`` saying what is wrong (the registry adds the plugin and its package).
        signature_options: entries without an ``options`` dataclass take the keyword
            arguments of their signature as options (front ends, backbones), except these.
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        noun: str = "",
        builtins: tuple[str, ...] = (),
        legacy_groups: tuple[str, ...] = (),
        contract: Callable[[str, Any], None] | None = None,
        signature_options: tuple[str, ...] | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._noun = noun
        self._builtins = builtins
        self._legacy_groups = legacy_groups
        self.contract = contract
        self._signature_options = signature_options
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._packages: dict[str, str] = {}
        self._options: dict[str, type | None] = {}
        self._plugins_loaded = entry_point_group is None
        self._builtins_loaded = not builtins

    @property
    def singular(self) -> str:
        """The noun for one entry in messages: ``noun`` if given (``"losses"`` -> ``"method"``),
        else ``"encoders"`` -> ``"encoder"``, ``"modalities"`` -> ``"modality"``,
        ``"classes"`` -> ``"class"``.
        """
        if self._noun:
            return self._noun
        if self.kind.endswith("ies"):
            return self.kind[:-3] + "y"
        if self.kind.endswith(("sses", "xes", "ches", "shes")):
            return self.kind[:-2]
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator: ``@BACKBONES.register("resnet8")`` above a factory or class."""

        def decorator(entry: T) -> T:
            self.add(name, entry, description)
            return entry

        return decorator

    def add(
        self, name: str, entry: T, description: str = "", package: str = "", where: str = ""
    ) -> None:
        """Register ``entry`` under ``name``; raises if the name is taken. ``package``: the
        distribution providing it (default: from the entry's module, ``xmodal`` for built-ins).
        A plugin (any other package) is checked against the kind's contract first; ``where``
        names it in that message.
        """
        if not name or not isinstance(name, str):
            raise ValueError(
                f"{self.kind}: a registry name must be a non-empty string, got {name!r}"
            )
        if name in self._entries:
            raise XmodalError(
                f"{self.kind}: '{name}' is already registered (by {_origin(self._entries[name])}); "
                "choose another name"
            )
        module = getattr(entry, "__module__", None) or type(entry).__module__
        package = package or module.partition(".")[0]
        if package != "xmodal":  # a plugin, from an entry point or registered in code
            self.check_plugin(name, entry, where or f"'{name}' ({module})")
        self._entries[name] = entry
        self._descriptions[name] = one_line(description or getattr(entry, "__doc__", None) or "")
        self._packages[name] = package

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

    def options_type(self, name: str) -> type | None:
        """The dataclass of ``name``'s options: its ``options`` attribute, else (for kinds with
        ``signature_options``) one made from its signature's keyword arguments; None if it has none.
        """
        entry = self.get(name)
        if name not in self._options:
            self._options[name] = _options_of(entry, name, self._signature_options)
        return self._options[name]

    def options_by_key(self) -> dict[str, type]:
        """``{options key: options dataclass}`` of every entry that has options."""
        found: dict[str, type] = {}
        for name in self.names():
            options = self.options_type(name)
            if options is not None:
                found.setdefault(self.options_key(name), options)
        return found

    def options_key(self, name: str) -> str:
        """The key under which ``name``'s options sit in its config section: the entry's
        ``options_key`` (``wcord-global`` shares ``wcord``'s), else the name with ``-`` -> ``_``.
        """
        return getattr(self.get(name), "options_key", None) or name.replace("-", "_")

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
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtins:
                importlib.import_module(module)
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # set first: a failing plugin must not be retried forever
        for group in (self.entry_point_group, *self._legacy_groups):
            for ep in metadata.entry_points(group=group):
                dist = getattr(ep, "dist", None)  # the installed distribution that declared it
                package = dist.name if dist is not None else "an unknown package"
                where = f"plugin '{ep.name}' ({ep.value}) from package '{package}'"
                try:
                    entry = ep.load()
                except Exception as exc:  # a broken plugin must name itself, not crash every lookup
                    raise XmodalError(
                        f"{self.kind}: {where}, entry-point group '{group}', failed to load: {exc}; "
                        "fix or uninstall that package"
                    ) from exc
                self.add(ep.name, entry, package=dist.name if dist is not None else "", where=where)

    def check_plugin(self, name: str, entry: Any, where: str = "") -> None:
        """Check ``entry`` against this kind's contract (and its options type); one
        :class:`XmodalError` naming the plugin and what is wrong.
        """
        try:
            _options_of(entry, name, self._signature_options)
            if self.contract is not None:
                self.contract(name, entry)
        except (TypeError, ValueError, AttributeError) as exc:
            raise XmodalError(
                f"{self.kind}: {where or repr(name)} breaks the {self.singular} contract: {exc}"
            ) from None


def _options_of(entry: Any, name: str, signature: tuple[str, ...] | None) -> type | None:
    declared = getattr(entry, "options", None)
    if declared is not None:
        if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
            raise TypeError(f"'{name}'.options must be a dataclass type, got {declared!r}")
        return declared
    if signature is None or not callable(entry):
        return None
    return options_from_signature(entry, name, skip=signature)


def options_from_signature(
    factory: Callable[..., Any], name: str, skip: tuple[str, ...] = ()
) -> type:
    """A dataclass of ``factory``'s keyword arguments (typed by their annotations, ``Any``
    without one), so that a front end or backbone gets typed options without declaring them.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = typing.get_type_hints(target, include_extras=True)
    fields = []
    for param in inspect.signature(factory).parameters.values():
        if param.name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is param.empty:
            raise TypeError(
                f"'{name}': argument '{param.name}' needs a default value (options "
                "are optional in the config)"
            )
        default = param.default
        spec = (
            dataclasses.field(default_factory=lambda d=default: type(d)(d))
            if isinstance(default, (list, dict, set))
            else dataclasses.field(default=default)
        )
        fields.append((param.name, hints.get(param.name, Any), spec))
    return dataclasses.make_dataclass(f"{name.title().replace('-', '')}Options", fields)


def _origin(entry: object) -> str:
    module = getattr(entry, "__module__", None)
    qual = getattr(entry, "__qualname__", type(entry).__name__)
    return f"{module}.{qual}" if module else str(qual)


_ROLE = re.compile(r":[a-z]+:`~?([^`]*)`")  # :class:`~pkg.mod.Name` -> pkg.mod.Name
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!etc)(?<! al)[.!?](?=\s|$)")


def one_line(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, in plain text
    (reST roles and double backticks removed).
    """
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], paragraph).replace("``", "")
    end = _SENTENCE_END.search(text)
    return text[: end.end()] if end else text.rstrip(";,:")


# The registries. Each layer that defines a kind's protocol sets that registry's ``contract``
# when it is imported (always before plugins load: built-ins are imported first).
DATASETS: Registry[Any] = Registry("datasets", "xmodal.datasets", builtins=("xmodal.data",))
FRONTENDS: Registry[Any] = Registry(
    "frontends",
    "xmodal.frontends",
    noun="modality",
    builtins=("xmodal.encoders",),
    legacy_groups=("xmodal.modalities",),
    signature_options=(),
)
BACKBONES: Registry[Any] = Registry(
    "backbones",
    "xmodal.backbones",
    builtins=("xmodal.encoders",),
    legacy_groups=("xmodal.encoders",),
    signature_options=("in_channels",),
)
METHODS: Registry[Any] = Registry(
    "methods",
    "xmodal.methods",
    builtins=("xmodal.objectives", "xmodal.objectives.baselines"),
    legacy_groups=("xmodal.losses",),
)
PROBES: Registry[Any] = Registry("probes", "xmodal.probes", builtins=("xmodal.evaluation",))
STAGES: Registry[Any] = Registry("stages", "xmodal.stages", builtins=("xmodal.pipelines",))
PIPELINES: Registry[Any] = Registry("pipelines", "xmodal.pipelines", builtins=("xmodal.pipelines",))

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (METHODS, BACKBONES, FRONTENDS, DATASETS, PROBES, PIPELINES, STAGES)
}
"""Every registry by kind, in the order ``xmodal list`` prints them."""


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind (``methods``, ``backbones``, ``frontends``, ``datasets``,
    ``probes``, ``pipelines``, ``stages``) matching a wildcard, e.g. ``list_components("backbones", "resnet*")``.
    """
    if kind not in REGISTRIES:
        close = difflib.get_close_matches(kind, REGISTRIES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown kind '{kind}': {hint}kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind].names(pattern)
