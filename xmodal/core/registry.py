"""The registries: one per pluggable kind, each a name -> entry mapping filled from entry points.

Every component, built-in or from another package, is declared by an entry point in the group
``xmodal.<kind>``, one per kind: methods, backbones, frontends, datasets, probes, stages,
pipelines. xmodal's own ``pyproject.toml`` declares the built-ins. Names come from the installed
metadata alone, so listing or checking a name imports nothing; an entry's module is imported the
first time the entry itself is needed. A plugin is checked against its kind's contract when it
loads (xmodal's entry for the kind in the ``xmodal.contracts`` group). An unknown name raises
with close matches; a name registered twice raises instead of overwriting.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from xmodal.core.errors import DeprecatedSpelling, XmodalError

T = TypeVar("T")

#: the distribution whose entries are built-ins (not checked against contracts)
OWN_PACKAGE = "xmodal"
#: the group in which xmodal declares each kind's contract, by kind
CONTRACTS_GROUP = "xmodal.contracts"
#: groups already warned about in this process (each deprecated group warns once)
_WARNED: set[str] = set()


class UnknownNameError(XmodalError, KeyError):
    """An unknown registry name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _package_of(ep: Any) -> str:
    """The distribution that declared entry point ``ep`` (empty when unknown)."""
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else ""


def _ep_module(ep: Any) -> str:
    """The module an entry point names (``pkg.mod`` of ``pkg.mod:Name``)."""
    return str(ep.value).partition(":")[0].strip()


def _group_of(ep: Any) -> str:
    return str(getattr(ep, "group", None) or "?")


def _ep_attr(ep: Any) -> str:
    """The attribute an entry point names (empty for a bare module)."""
    return str(ep.value).partition(":")[2].strip()


def _module_of(entry: object) -> str:
    return str(getattr(entry, "__module__", None) or type(entry).__module__)


def _same_package(a: str, b: str) -> bool:
    """Distribution names compare as pip does (``My_Pkg`` is ``my-pkg``)."""
    return re.sub(r"[-_.]+", "-", a).lower() == re.sub(r"[-_.]+", "-", b).lower()


class Registry(Generic[T]):
    """A mapping from names to entries of one kind, declared by entry points.

    Names are read from the installed metadata on first use (no import); an entry is loaded
    (its module imported) when it is first needed: :meth:`get`, :meth:`describe`, options.
    Entries can also be added in code (:meth:`add`, :meth:`register`); a name declared by an
    entry point may be registered in code only by the module that entry point names.

    Args:
        kind: plural noun used in messages and in the default group, e.g. ``"backbones"``.
        entry_point_group: the ``importlib.metadata`` group to read; each entry point's name
            is the registry name, its object the entry (``module:attribute``), or a module that
            registers the name when imported (``module``).
        noun: the singular for messages when it is not the kind minus its plural ending.
        legacy_groups: old group names, still read for one release with a
            :class:`~xmodal.core.errors.DeprecatedSpelling` warning naming the new group.
        contract: checks a plugin's entry when it loads; raises ``ValueError`` or
            ``TypeError`` saying what is wrong (the registry adds the plugin and its package).
            When None, a registry with ``own_package`` uses that package's entry named ``kind``
            in the ``xmodal.contracts`` group, if it declares one (a plugin's is ignored).
        signature_options: entries without an ``options`` dataclass take the keyword
            arguments of their signature as options (front ends, backbones), except these.
        own_package: a distribution that must declare entries in the group (xmodal for its
            own registries): none found means a stale or missing install, said in one line.
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        noun: str = "",
        legacy_groups: tuple[str, ...] = (),
        contract: Callable[[str, Any], None] | None = None,
        signature_options: tuple[str, ...] | None = None,
        own_package: str = "",
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._noun = noun
        self._legacy_groups = legacy_groups
        self.contract = contract
        self._signature_options = signature_options
        self._own_package = own_package
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._packages: dict[str, str] = {}
        self._options: dict[str, type | None] = {}
        self._declared: dict[str, Any] | None = None if entry_point_group else {}
        self._loading: dict[str, str] = {}  # name -> its plugin's description, while it loads
        self._contract_loaded = contract is not None

    @property
    def singular(self) -> str:
        """The noun for one entry in messages.

        ``noun`` if given (``"losses"`` -> ``"method"``), else ``"encoders"`` -> ``"encoder"``,
        ``"modalities"`` -> ``"modality"``, ``"classes"`` -> ``"class"``.
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
        """Register ``entry`` under ``name``; raises if the name is taken.

        Args:
            name: the registry name.
            entry: the class, factory or object.
            description: one sentence for ``xmodal list`` (default: the entry's docstring).
            package: the distribution providing it (default: from the entry's module,
                ``xmodal`` for built-ins). A plugin (any other package) is checked against the
                kind's contract first.
            where: names the plugin in that check's message.
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
        ep = self._scan().get(name)
        module = _module_of(entry)
        if ep is not None and name not in self._loading and module != _ep_module(ep):
            raise XmodalError(
                f"{self.kind}: '{name}' is declared by package '{_package_of(ep) or '?'}' "
                f"({ep.value}); {_origin(entry)} cannot register it too; choose another name"
            )
        package = package or module.partition(".")[0]
        if package != OWN_PACKAGE:  # a plugin, from an entry point or registered in code
            where = (
                where
                or self._loading.get(name)
                or f"plugin '{name}' ({_origin(entry)}, registered in code) from package "
                f"'{package}'"
            )
            self.check_plugin(name, entry, where)
        self._entries[name] = entry
        self._descriptions[name] = one_line(description or getattr(entry, "__doc__", None) or "")
        self._packages[name] = package

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (loaded now if it was not yet).

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists close matches.
        """
        if name in self._entries:
            return self._entries[name]
        self.check_name(name)
        return self._load(name, self._declared_entries()[name])

    def check_name(self, name: str) -> None:
        """Raise :class:`UnknownNameError` unless ``name`` is registered; imports nothing."""
        if name in self:
            return
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownNameError(
            f"unknown {self.singular} '{name}': {hint}available: {', '.join(names) or '(none)'}"
        )

    def options_type(self, name: str) -> type | None:
        """The dataclass of ``name``'s options, or None if it has none.

        Its ``options`` attribute, else (for kinds with ``signature_options``) one made from
        its signature's keyword arguments.
        """
        entry = self.get(name)
        if name not in self._options:
            self._options[name] = _options_of(entry, name, self._signature_options)
        return self._options[name]

    def options_by_key(self) -> dict[str, type]:
        """``{options key: options dataclass}`` of every entry that has options (loads all)."""
        found: dict[str, type] = {}
        for name in self.names():
            options = self.options_type(name)
            if options is not None:
                found.setdefault(self.options_key(name), options)
        return found

    def options_for_key(self, key: str) -> type | None:
        """The options dataclass held under ``key`` in a config section, or None.

        Loads only the entries whose name gives that key (``wcord`` for ``wcord``); all of them
        only when none does (an entry with its own ``options_key``, or an unknown key).
        """
        for name in self.names():
            if name.replace("-", "_") == key and self.options_key(name) == key:
                options = self.options_type(name)
                if options is not None:
                    return options
        return self.options_by_key().get(key)

    def options_key(self, name: str) -> str:
        """The key under which ``name``'s options sit in its config section.

        The entry's ``options_key`` (``wcord-global`` shares ``wcord``'s), else the name with
        ``-`` -> ``_``.
        """
        key = getattr(self.get(name), "options_key", None)
        return str(key) if key else name.replace("-", "_")

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard, e.g. ``"resnet*"``; imports nothing."""
        found = set(self._entries) | set(self._declared_entries())
        return sorted(n for n in found if fnmatch.fnmatchcase(n, pattern))

    def describe(self, name: str) -> str:
        """One plain-text sentence describing ``name`` (from its docstring or registration)."""
        self.get(name)
        return self._descriptions.get(name, "")

    def package(self, name: str) -> str:
        """The distribution that provides ``name`` (``xmodal`` for built-ins); imports nothing."""
        if name in self._packages:
            return self._packages[name]
        self.check_name(name)
        return _package_of(self._declared_entries()[name])

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared_entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _scan(self) -> dict[str, Any]:
        """``{name: entry point}`` of the group (and the deprecated groups), read once."""
        if self._declared is not None:
            return self._declared
        declared: dict[str, Any] = {}
        current = self.entry_point_group or ""  # None: the registry reads no group
        for group in (current, *self._legacy_groups):
            for ep in metadata.entry_points(group=group):
                if group != current:
                    self._warn_legacy(group, ep)
                other = declared.get(ep.name)
                if other is not None and (other.value, _package_of(other)) != (
                    ep.value,
                    _package_of(ep),
                ):
                    raise XmodalError(
                        f"{self.kind}: '{ep.name}' is declared twice, by package "
                        f"'{_package_of(other) or '?'}' ({other.value}) and by package "
                        f"'{_package_of(ep) or '?'}' ({ep.value}); uninstall one of them"
                    )
                declared[ep.name] = ep
        self._declared = declared
        return declared

    def _declared_entries(self) -> dict[str, Any]:
        """:meth:`_scan`, refusing an install whose own entry points are missing."""
        declared = self._scan()
        if self._own_package and not any(
            _same_package(_package_of(ep), self._own_package) for ep in declared.values()
        ):
            raise XmodalError(
                f"{self.kind}: the installed '{self._own_package}' package declares none in "
                f"the entry-point group '{self.entry_point_group}': its metadata is missing or "
                "stale; reinstall it (pip install -e . in a checkout)"
            )
        return declared

    def _warn_legacy(self, group: str, ep: Any) -> None:
        if group in _WARNED:
            return
        _WARNED.add(group)
        warnings.warn(
            f"package '{_package_of(ep) or '?'}' declares {self.kind} in the entry-point group "
            f"'{group}', an old name read for one more release; declare them in "
            f"'{self.entry_point_group}'",
            DeprecatedSpelling,
            stacklevel=2,
        )

    def _load(self, name: str, ep: Any) -> T:
        """Import the entry point declaring ``name`` and register what it names."""
        package = _package_of(ep)
        where = f"plugin '{name}' ({ep.value}) from package '{package or 'an unknown package'}'"
        self._loading[name] = where  # its module may register it in code meanwhile
        try:
            self._register_loaded(name, ep, self._import(name, ep, where), package, where)
        finally:
            del self._loading[name]
        if package:
            self._packages[name] = package
        return self._entries[name]

    def _import(self, name: str, ep: Any, where: str) -> Any:
        try:
            return ep.load()
        except Exception as exc:  # a broken plugin must name itself, not crash every lookup
            own = _same_package(_package_of(ep), OWN_PACKAGE)
            fix = (
                "its installed entry points may be stale: reinstall it (pip install -e .)"
                if own
                else "fix or uninstall that package"
            )
            raise XmodalError(
                f"{self.kind}: {where}, entry-point group '{_group_of(ep)}', failed to load: "
                f"{exc}; {fix}"
            ) from exc

    def _register_loaded(self, name: str, ep: Any, loaded: Any, package: str, where: str) -> None:
        if name in self._entries:  # its module registered it while being imported
            if _ep_attr(ep) and loaded is not self._entries[name]:
                raise XmodalError(
                    f"{self.kind}: '{name}' is declared as {ep.value} but its module registered "
                    f"{_origin(self._entries[name])}; make them agree"
                )
        elif isinstance(loaded, types.ModuleType):
            raise XmodalError(
                f"{self.kind}: {where} names module '{ep.value}', which registers no "
                f"{self.singular} '{name}'; name the object (module:attribute)"
            )
        else:
            self.add(name, loaded, package=package, where=where)

    def check_plugin(self, name: str, entry: Any, where: str = "") -> None:
        """Check ``entry`` against this kind's contract (and its options type).

        Raises:
            XmodalError: one line naming the plugin and what is wrong.
        """
        contract = self._contract()
        try:
            _options_of(entry, name, self._signature_options)
            if contract is not None:
                contract(name, entry)
        except (TypeError, ValueError, AttributeError) as exc:  # what the contract found wrong
            reason, cause = str(exc), None
        except Exception as exc:  # a contract that runs the entry (a front end's forward)
            reason, cause = f"{type(exc).__name__}: {exc}", exc
        else:
            return
        raise XmodalError(
            f"{self.kind}: {where or repr(name)} breaks the {self.singular} contract: "
            + " ".join(reason.split())
        ) from cause

    def _contract(self) -> Callable[[str, Any], None] | None:
        """This kind's contract: as set, else xmodal's entry in ``xmodal.contracts``."""
        if not self._contract_loaded and self._own_package:
            self._contract_loaded = True
            for ep in metadata.entry_points(group=CONTRACTS_GROUP):
                if ep.name == self.kind and _same_package(_package_of(ep), self._own_package):
                    contract = ep.load()
                    self.contract = self.contract or contract
        return self.contract


def _options_of(entry: Any, name: str, signature: tuple[str, ...] | None) -> type | None:
    """The options dataclass of ``entry``: its ``options``, else (``signature``) its signature's.

    A declared ``options`` of a kind built from its signature (front ends, backbones) must
    name only keyword arguments the entry takes, as the options reach it by keyword.
    """
    declared = getattr(entry, "options", None)
    if declared is not None:
        if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
            raise TypeError(f"'{name}'.options must be a dataclass type, got {declared!r}")
        if signature is not None and callable(entry):
            _check_takes(entry, name, declared, skip=signature)
        return declared
    if signature is None or not callable(entry):
        return None
    return options_from_signature(entry, name, skip=signature)


def _check_takes(
    factory: Callable[..., Any], name: str, options: type, skip: tuple[str, ...]
) -> None:
    """Raise ``TypeError`` when ``options`` has a field that ``factory`` takes no argument for."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = {p.name for p in params if p.kind is not p.VAR_POSITIONAL and p.name not in skip}
    extra = [f.name for f in dataclasses.fields(options) if f.init and f.name not in takes]
    if extra:
        raise TypeError(
            f"'{name}'.options has field(s) {', '.join(extra)} that it takes no argument for "
            f"(it takes {', '.join(sorted(takes)) or 'none'}); make them agree"
        )


def accepts(cls: type, method: str, positional: int, keywords: tuple[str, ...] = ()) -> bool:
    """Whether ``cls``'s ``method`` takes ``positional`` arguments plus ``keywords``, as called.

    Read from the signature alone: nothing is built or called. ``"__init__"`` is the
    constructor (``cls(...)``); otherwise the method of an instance (``self`` not counted),
    a ``staticmethod`` or a ``classmethod``. True when there is no signature to read.
    """
    args: list[Any] = [None] * positional
    kwargs: dict[str, Any] = dict.fromkeys(keywords)
    try:
        if method == "__init__":
            signature = inspect.signature(cls)
        else:
            raw = inspect.getattr_static(cls, method)
            if isinstance(raw, staticmethod | classmethod):
                signature = inspect.signature(getattr(cls, method))
            elif inspect.isfunction(raw):
                signature, args = inspect.signature(raw), [cls, *args]  # cls stands for self
            else:
                return True  # a callable object: its call cannot be read without it
    except (TypeError, ValueError):  # no signature (a builtin)
        return True
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def signature_of(cls: type, method: str) -> str:
    """``method``'s parameters for messages, e.g. ``(self, options, cache_path)``."""
    target = cls if method == "__init__" else inspect.getattr_static(cls, method, None)
    if isinstance(target, staticmethod | classmethod):
        target = target.__func__
    try:
        return str(inspect.signature(target))
    except (TypeError, ValueError):
        return "(?)"


def options_from_signature(
    factory: Callable[..., Any], name: str, skip: tuple[str, ...] = ()
) -> type:
    """A dataclass of ``factory``'s keyword arguments.

    Typed by their annotations (``Any`` without one), so that a front end or backbone gets
    typed options without declaring them.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = typing.get_type_hints(target, include_extras=True)
    fields: list[tuple[str, Any, Any]] = []
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
            dataclasses.field(default_factory=_copies(default))
            if isinstance(default, (list, dict, set))
            else dataclasses.field(default=default)
        )
        fields.append((param.name, hints.get(param.name, Any), spec))
    return dataclasses.make_dataclass(f"{name.title().replace('-', '')}Options", fields)


def _copies(default: Any) -> Callable[[], Any]:
    """A factory of fresh copies of a mutable default (a list, dict or set)."""
    return lambda: type(default)(default)


def _origin(entry: object) -> str:
    module = getattr(entry, "__module__", None)
    qual = getattr(entry, "__qualname__", type(entry).__name__)
    return f"{module}.{qual}" if module else str(qual)


_ROLE = re.compile(r":[a-z]+:`~?([^`]*)`")  # :class:`~pkg.mod.Name` -> pkg.mod.Name
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!etc)(?<! al)[.!?](?=\s|$)")


def one_line(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, in plain text.

    reST roles and double backticks are removed.
    """
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], paragraph).replace("``", "")
    end = _SENTENCE_END.search(text)
    return text[: end.end()] if end else text.rstrip(";,:")


def _project(kind: str, former: tuple[str, ...] = (), **kwargs: Any) -> Registry[Any]:
    """One of xmodal's registries: group ``xmodal.<kind>``, built-ins declared by xmodal.

    ``former``: the kind's old names, whose groups ``xmodal.<former>`` are still read, with a
    deprecation warning, for one more release.
    """
    return Registry(
        kind,
        f"xmodal.{kind}",
        legacy_groups=tuple(f"xmodal.{old}" for old in former),
        own_package=OWN_PACKAGE,
        **kwargs,
    )


# The registries; each layer's entries are declared in xmodal's pyproject.toml.
DATASETS = _project("datasets")
FRONTENDS = _project("frontends", former=("modalities",), noun="modality", signature_options=())
BACKBONES = _project("backbones", former=("encoders",), signature_options=("in_channels",))
METHODS = _project("methods", former=("losses",))
PROBES = _project("probes")
STAGES = _project("stages")
PIPELINES = _project("pipelines")

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (METHODS, BACKBONES, FRONTENDS, DATASETS, PROBES, PIPELINES, STAGES)
}
"""Every registry by kind, in the order ``xmodal list`` prints them."""


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind matching a wildcard; imports nothing.

    ``kind``: ``methods``, ``backbones``, ``frontends``, ``datasets``, ``probes``,
    ``pipelines`` or ``stages``; e.g. ``list_components("backbones", "resnet*")``.
    """
    if kind not in REGISTRIES:
        close = difflib.get_close_matches(kind, REGISTRIES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown kind '{kind}': {hint}kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind].names(pattern)
