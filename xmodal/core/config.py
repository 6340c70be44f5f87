"""Typed, validated configs: YAML -> nested dataclasses, with ``--set a.b=c`` overrides.

Every config section is a dataclass whose field annotations are the schema. A section that
selects components (:class:`ComponentSection`: datasets, methods, probes, front ends) also holds
each component's options under its name, typed by the dataclass the component declares, so a
plugin's options get the same checks as a built-in's. Loading checks each key against it: an
unknown key fails with its full dotted path and a close-match suggestion, a value of the wrong
type fails with the expected type. Values are checked too:
floats must be finite, seeds (keys named ``seed``/``seeds``) lie in [0, 2^32), integers fit in
64 bits, and lists hold no repeats unless annotated ``Annotated[list[...], AllowRepeats]`` (a
shape such as ``[64, 64]``). A section's own rules (``require`` in its ``__post_init__``) name
each field that breaks one by its full key. Overrides are parsed as YAML scalars/lists
(``--set distill.methods=[none,wcord]``) and validated the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import yaml

from xmodal.core.checks import InvalidOptions
from xmodal.core.errors import ConfigError, DeprecatedSpelling
from xmodal.core.registry import Registry

C = TypeVar("C")

#: ``Annotated[list[int], AllowRepeats]``: a list whose items may repeat (a shape, not a set)
AllowRepeats = "allow-repeats"
SEED_RANGE = 2**32  # numpy's and torch's seedable range


#: metadata of the field of a :class:`ComponentSection` that holds the components' options
COMPONENT_OPTIONS = {"component-options": True}


class ComponentSection:
    """A config section that selects components of one kind and holds their options.

    Beside its own fields, it holds the options of each component under its options key
    (``distill.wcord.tau``, ``data.scenes.image_size``). Subclasses are dataclasses that set
    ``components`` (the registry) and declare
    ``by_name: dict[str, Any] = field(default_factory=dict, metadata=COMPONENT_OPTIONS)``; the
    YAML never names ``by_name``: each component's options sit at the section's level.

    A section that selects one component by a ``name`` field may set ``former_options_key``:
    the key that held that component's options in an earlier release (``teacher.encoder.kwargs``).
    It is read for one more release as the key under the component's name, with one
    :class:`~xmodal.core.errors.DeprecatedSpelling` warning per key; both spellings in one
    mapping are an error.
    """

    components: ClassVar[Registry[Any]]
    former_options_key: ClassVar[str] = ""
    by_name: dict[str, Any]

    def options_for(self, name: str) -> Any:
        """The options of component ``name``: as configured, else its defaults; None if none."""
        key = self.components.options_key(name)
        if key in self.by_name:
            return self.by_name[key]
        options = self.components.options_type(name)
        return None if options is None else options()

    def fill(self, name: str) -> None:
        """Write ``name``'s default options into the section unless set.

        So that a resolved config lists every option of every component it uses.
        """
        key = self.components.options_key(name)
        options = self.components.options_type(name)
        if key not in self.by_name and options is not None and dataclasses.fields(options):
            self.by_name[key] = options()


def _plain_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {
        f.name: f
        for f in dataclasses.fields(cls)
        if f.init and not f.metadata.get("component-options")
    }


class _ComponentOptions(Mapping[str, type]):
    """``{options key: options type}`` of the components a section may hold, looked up lazily.

    A lookup loads only the components the key names; listing the keys (for a message about an
    unknown one) loads them all.
    """

    def __init__(self, registry: Registry[Any] | None) -> None:
        self.registry = registry

    def __getitem__(self, key: str) -> type:
        options = self.registry.options_for_key(key) if self.registry is not None else None
        if options is None:  # also makes ``key in mapping`` False (Mapping.__contains__)
            raise KeyError(key)
        return options

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.options_by_key() if self.registry is not None else {})

    def __len__(self) -> int:
        return len(self.registry.options_by_key()) if self.registry is not None else 0


def _component_types(cls: type) -> Mapping[str, type]:
    """The options types of the components a section may hold (none for plain sections)."""
    if isinstance(cls, type) and issubclass(cls, ComponentSection):
        return _ComponentOptions(cls.components)
    return _ComponentOptions(None)


def from_dict(cls: type[C], data: Any, path: str = "") -> C:
    """Build dataclass ``cls`` from a plain mapping, validating keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path or 'config'}: expected a mapping, got {type(data).__name__} {data!r}"
        )
    hints = get_type_hints(cls, include_extras=True)
    fields = _plain_fields(cls)
    data = _upgraded(cls, data, path)
    components: Mapping[str, type] = (
        _component_types(cls) if any(k not in fields for k in data) else {}
    )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields and key in components:  # a component's options, loaded by key
            kwargs.setdefault("by_name", {})[key] = from_dict(
                components[key], {} if value is None else value, key_path
            )
            continue
        if key not in fields:
            valid = [*fields, *components]
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"; did you mean '{_join(path, close[0])}'?" if close else ""
            registry: Registry[Any] | None = getattr(cls, "components", None)
            owner = f" or {registry.singular} options" if components and registry else ""
            raise ConfigError(
                f"unknown config key '{key_path}'{hint} (valid keys here: "
                f"{', '.join(fields)}{owner}{': ' + ', '.join(components) if components else ''})"
            )
        kwargs[key] = _convert(hints[key], value, key_path)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field without a default
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    except InvalidOptions as exc:  # require() in __post_init__: each field by its full key
        raise ConfigError(_invalid_message(exc, fields, path)) from None
    except (ValueError, OverflowError) as exc:  # other __post_init__ validation
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    return obj


def _invalid_message(
    exc: InvalidOptions, fields: dict[str, dataclasses.Field[Any]], path: str
) -> str:
    """``config key 'a.b.field': invalid field=V (must be ...)`` for each field that broke a rule.

    Problems about fields that are not the section's own (raised by a nested check) keep the
    options' own message, prefixed with the section's path.
    """
    if not all(name in fields for name, _, _ in exc.problems):
        return f"{path or 'config'}: {exc}"
    return "; ".join(
        f"config key '{_join(path, name)}': invalid {name}={value!r} (must be {need})"
        for name, value, need in exc.problems
    )


#: former option keys already warned about in this process (each warns once)
_WARNED_KEYS: set[str] = set()


def _former_key(cls: Any) -> str:
    """The ``former_options_key`` of a component section (empty for other classes)."""
    if isinstance(cls, type) and issubclass(cls, ComponentSection):
        return cls.former_options_key
    return ""


def _options_key_of(cls: type[ComponentSection], name: Any) -> str | None:
    """The key of component ``name``'s options in section ``cls`` (None for a non-name).

    A name that is not registered keeps its own spelling, so that loading names the key
    (the name checks name the component).
    """
    if not isinstance(name, str) or not name:
        return None
    return cls.components.options_key(name) if name in cls.components else name.replace("-", "_")


def _upgraded(cls: Any, data: dict[str, Any], path: str, name: Any = None) -> dict[str, Any]:
    """``data`` with a section's former options key read as the key under its component's name.

    ``name`` is the selected component (default: ``data``'s ``name``, else the field's default).
    Warns once per key; both spellings in ``data`` raise :class:`ConfigError` naming both.
    """
    former = _former_key(cls)
    if not former or former not in data:
        return data
    if name is None:
        default = {f.name: f.default for f in dataclasses.fields(cls)}.get("name")
        name = data.get("name", default)
    key = _options_key_of(cls, name)
    if key is None:
        return data
    old, new = _join(path, former), _join(path, key)
    if key in data:
        raise ConfigError(
            f"config keys '{old}' and '{new}' both give the options of "
            f"{cls.components.singular} '{name}'; keep '{new}' and delete '{old}' (its "
            "former spelling)"
        )
    _warn_former(old, new)
    return {key if k == former else k: v for k, v in data.items()}


def _warn_former(old: str, new: str) -> None:
    """One :class:`DeprecatedSpelling` warning per former key ``old`` in this process."""
    if old not in _WARNED_KEYS:
        _WARNED_KEYS.add(old)
        warnings.warn(
            f"config key '{old}' is deprecated: write '{new}' (a component's options sit "
            f"under its name); '{old}' is read as '{new}' for one more release",
            DeprecatedSpelling,
            stacklevel=3,
        )


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (dataclasses -> dicts), suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("component-options")
        }
        if isinstance(obj, ComponentSection):  # each component's options at the section's level
            out.update({key: to_dict(options) for key, options in obj.by_name.items()})
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def fingerprint(obj: Any) -> str:
    """Stable 16-hex-digit hash of a config (section), used to key cached stage outputs."""
    text = json.dumps(to_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flat_hparams(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested plain config -> ``{"a.b": scalar}``; lists and None as text.

    Trackers such as TensorBoard's hparams accept only scalars.
    """
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flat_hparams(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, (bool, int, float, str)):
        return {prefix: data}
    return {prefix: json.dumps(data, default=str)}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=[1, 2]"`` -> (["a", "b"], [1, 2]); values are parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. --set distill.optim.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set '{text}': value is not valid YAML ({exc.__class__.__name__})"
        ) from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], schema: type) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``KEY=VALUE`` override set, checking keys exist.

    A section's former options key (``teacher.encoder.kwargs.pretrained``) is read as the key
    under the component the section selects once every override is applied, as is the
    former key of a section the override enters (a YAML's ``kwargs``), so that either
    spelling overrides either, key by key.
    """
    merged: dict[str, Any] = json.loads(json.dumps(data))  # deep copy of plain data
    parsed = [parse_override(text) for text in overrides]
    for text, (keys, value) in zip(overrides, parsed, strict=True):
        node: Any = merged
        cls: Any = schema  # a dataclass; dict: a free-form mapping; (V,): the keys of dict[str, V]
        walked: list[str] = []
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if cls is dict or isinstance(cls, tuple):  # a mapping's own key: any key goes
                walked.append(key)
                cls = cls[0] if isinstance(cls, tuple) else dict
                node = _step(node, key, value, last, text, walked)
                continue
            names = list(_plain_fields(cls)) if isinstance(cls, type) else []
            if _former_key(cls) and isinstance(node, dict):
                name = _final_name(node, walked, parsed, cls)
                section = _upgraded(cls, node, ".".join(walked), name)
                if section is not node:  # the former key read as the new one, in place
                    node.clear()
                    node.update(section)
                if key == _former_key(cls) and key not in names:
                    key = _options_key_of(cls, name) or key
                    _warn_former(
                        _join(".".join(walked), _former_key(cls)), _join(".".join(walked), key)
                    )
            walked.append(key)
            components = _component_types(cls) if key not in names else {}
            if key in components:  # a component's options: the walk continues inside them
                cls = components[key]
                node = _step(node, key, value, last, text, walked)
                continue
            if key not in names:
                names += list(_component_types(cls))
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f"; did you mean '{'.'.join(walked[:-1] + close)}'?" if close else ""
                raise ConfigError(f"--set '{text}': unknown config key '{'.'.join(walked)}'{hint}")
            if not last:
                field_type = get_type_hints(cls)[key]
                cls = _section_of(field_type)
                if cls is None:
                    raise ConfigError(f"--set '{text}': '{'.'.join(walked)}' is not a section")
            node = _step(node, key, value, last, text, walked)
    return merged


def _step(node: Any, key: str, value: Any, last: bool, text: str, walked: list[str]) -> Any:
    """Set ``node[key] = value`` (the last key), else the mapping at ``node[key]`` (made)."""
    if last:
        node[key] = value
        return None
    node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise ConfigError(f"--set '{text}': '{'.'.join(walked)}' is not a section")
    return node


def _section_of(field_type: Any) -> Any:
    """What a walk enters through a field: its dataclass, ``(V,)`` for ``dict[str, V]``.

    ``dict`` for a free-form mapping, None for a value that is no section.
    """
    if get_origin(field_type) is dict:
        value_type = (get_args(field_type) or (str, Any))[1]
        inner = _dataclass_of(value_type)
        return (inner,) if inner is not None else dict
    return _dataclass_of(field_type)


def _final_name(
    node: dict[str, Any], walked: list[str], parsed: list[tuple[list[str], Any]], cls: Any
) -> Any:
    """The ``name`` that section ``node`` (at ``walked``) holds once every override is set."""
    default = {f.name: f.default for f in dataclasses.fields(cls)}.get("name")
    name = node.get("name", default)
    for keys, value in parsed:
        if keys == [*walked, "name"]:
            name = value
    return name


def merged_data(
    base: dict[str, Any], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The plain data of a config: ``base`` <- the YAML at ``path`` <- ``overrides``, unchecked.

    For checks that must run before the schema's layers are imported (names only);
    :func:`load_config` checks every key and value. An override whose path crosses a value
    that is not a mapping is left out here (loading reports it).
    """
    data: dict[str, Any] = json.loads(json.dumps(base))
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = data
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[keys[-1]] = value
    return data


def load_config(
    schema: type[C],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> C:
    """Load ``schema`` from defaults <- ``base`` <- the YAML at ``path`` <- ``overrides``.

    Each later source wins key by key.
    """
    data: dict[str, Any] = json.loads(json.dumps(base or {}))
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    before_load = getattr(schema, "before_load", None)
    if before_load is not None:  # e.g. import plugin modules, whose options the config may set
        before_load(data, list(overrides))
    data = apply_overrides(data, list(overrides), schema)
    return from_dict(schema, data)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one clear error for a missing or malformed file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file '{path}' is not valid YAML: {' '.join(str(exc).split())}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    return data


def dump_yaml(obj: Any) -> str:
    """A config (section) as YAML text, keys in schema order."""
    return str(yaml.safe_dump(to_dict(obj), sort_keys=False))


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dataclass_of(tp: Any) -> type | None:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, path: str, repeats: bool = False) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        return _convert(base, value, path, repeats=AllowRepeats in meta)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            f"config key '{path}': expected {' or '.join(_type_name(a) for a in args)}, "
            f"got {value!r}"
        )
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"config key '{path}': {value!r} is not one of "
                f"{', '.join(repr(a) for a in allowed)}{hint}"
            )
        return value
    if origin in (list, tuple, typing.Sequence):
        (item,) = get_args(tp)[:1] or (Any,)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item is not Any:
            value = [value]  # a lone scalar for a list key: --set distill.methods=wcord
        if not isinstance(value, list):
            raise ConfigError(f"config key '{path}': expected a list, got {value!r}")
        items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not repeats:
            _check_distinct(items, path)
        return items
    if origin is dict:
        key_t, val_t = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        return {k: _convert(val_t, v, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}': expected an integer, got {value!r}")
        if (
            path.rsplit(".", 1)[-1].split("[")[0] in ("seed", "seeds")
            and not 0 <= value < SEED_RANGE
        ):
            raise ConfigError(f"config key '{path}': seed {value} is outside [0, 2^32)")
        if not -(2**63) <= value < 2**63:
            raise ConfigError(f"config key '{path}': {value} does not fit in 64 bits")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}': expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"config key '{path}': {value!r} is not a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}': expected a string, got {value!r}")
        return value
    raise TypeError(f"config schema at '{path}' uses unsupported type {tp!r}")


def _check_distinct(items: list[Any], path: str) -> None:
    """Refuse a repeated item in a list of names or values.

    ``[wcord, wcord]`` would run one method twice and report it as two seeds.
    """
    seen: list[Any] = []
    for item in items:
        if item in seen:
            raise ConfigError(
                f"config key '{path}': items must be distinct, {item!r} is listed "
                "twice; list each once"
            )
        seen.append(item)
