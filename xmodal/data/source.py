"""What a registered dataset provides: preparation into a cache, loading, and a description.

A dataset may describe its own files for ``xmodal data info`` as :data:`Section` tables
(``describe_file``); :func:`describe_dataset_file` asks it. :func:`dataset_contract` is the
check a dataset plugin passes when it loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from xmodal.core.registry import FRONTENDS, accepts, signature_of

if TYPE_CHECKING:
    from xmodal.data.arrays import SplitData

#: one table of a file's description: (title, column headers, rows of cells); headers ``["", ""]``
#: make a two-column overview without a header row
Section = tuple[str, list[str], list[list[str]]]
#: the title of a section listing a file's problems (``xmodal data info`` then exits 1)
PROBLEMS = "problems"


@dataclass
class LoadedDataset:
    """Splits of a prepared dataset, read from its cache as needed.

    Attributes:
        splits: ``{"train"|"val"|"test": SplitData}``, streamed from the cache
            (:class:`~xmodal.data.hdf5_split.HDF5Split`) or in memory; each has one column per
            modality plus ``label`` (``[N]`` long).
        num_classes: number of scene classes.
        class_names: their names, index = label.
        frontend_kwargs: per-modality keyword arguments for the encoder front ends (e.g. the
            audio sample rate in Hz).
        dense_labels: per-pixel label keys in the splits and their class counts (labels
            ``1..C``, 0 = unlabeled), e.g. ``{"seg40": 40}``, for dense probes.
        skipped_rows: source rows left out as bad (e.g. ``paired``'s manifest row numbers,
            from 1, with ``on_bad_sample=skip``); the report stores their count.
        notes: warnings about the data that an option allowed (e.g. ``paired``'s duplicate
            files with ``allow_duplicates``), one line each; printed when it is loaded.

    A dataset without labels has no ``label`` key in its splits, ``num_classes`` 0 and no
    ``class_names``.
    """

    splits: Mapping[str, SplitData]
    num_classes: int
    class_names: list[str]
    frontend_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense_labels: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class DatasetSource(Protocol):
    """A registered dataset (``xmodal.datasets`` entry point): modalities, preparation, loading.

    ``prepare`` reports ``progress(done, total)``, and may pass rich task fields such as
    ``description="validate paired"`` to name a phase. A source whose modalities or labels
    depend on its options (a manifest's columns) also has ``modalities_for(options)`` and
    ``labelled_for(options)``; read them through :func:`dataset_modalities` and
    :func:`dataset_labelled`.

    A dataset describes its files for ``xmodal data info`` with
    ``describe_file(path, options, progress) -> list[Section] | None``: the tables describing
    ``path`` (its source file, its cache, ...), or None when ``path`` is none of its files (the
    next dataset is asked). ``options`` are its options (with ``path`` set to the file when they
    have one, and the user's ``--set data.KEY.OPTION=VALUE``); ``progress`` as in ``prepare``.
    Problems found go in a section titled :data:`PROBLEMS`.
    Read it through :func:`describe_dataset_file`.
    """

    name: str
    modalities: tuple[str, ...]

    def prepare(
        self, options: Any, cache_path: Path, progress: Callable[..., None] | None = None
    ) -> Path:
        """Write the dataset with ``options`` into the cache at ``cache_path``; returns it."""
        ...

    def load(self, cache_path: Path) -> LoadedDataset:
        """The splits of a prepared cache."""
        ...


#: each method of a dataset class, as xmodal calls it: (positional arguments, keywords)
REQUIRED_METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prepare": (("options", "cache_path"), ("progress",)),
    "load": (("cache_path",), ()),
}
OPTIONAL_METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "modalities_for": (("options",), ()),
    "labelled_for": (("options",), ()),
    "fingerprint": (("options",), ()),
    "teacher_task_options": (("options",), ()),
    "load_teacher_task": (("cache_path",), ()),
    "describe_file": (("path", "options", "progress"), ()),
}


def dataset_contract(name: str, entry: Any) -> None:
    """Check a dataset class against :class:`DatasetSource`, from its class alone.

    Nothing is built, prepared or loaded: a class built with no arguments; ``name`` a
    non-empty str; ``modalities`` a tuple of registered front ends; ``options`` a dataclass;
    ``prepare`` and ``load`` (and each optional method it has) callable as xmodal calls them;
    ``labelled`` a bool and ``example_options`` a dict of its options, if present.

    Raises:
        TypeError: a member of the wrong kind, or a method that cannot take xmodal's call.
        ValueError: a value out of its range; each message says what to change.
    """
    if not isinstance(entry, type):
        raise TypeError(
            f"dataset '{name}' must be a class (built with no arguments), got {entry!r}"
        )
    if not accepts(entry, "__init__", 0):
        raise TypeError(
            f"dataset '{name}' must be built with no arguments, but its constructor takes "
            f"{signature_of(entry, '__init__')}; make those arguments options"
        )
    label = getattr(entry, "name", None)
    if not (isinstance(label, str) and label):
        raise ValueError(f"dataset '{name}'.name must be a non-empty str, got {label!r}")
    modalities = getattr(entry, "modalities", None)
    if not (isinstance(modalities, tuple | list) and all(isinstance(m, str) for m in modalities)):
        raise TypeError(
            f"dataset '{name}'.modalities must be a tuple of front-end names (empty when "
            f"modalities_for(options) gives them), got {modalities!r}"
        )
    unknown = [m for m in modalities if m not in FRONTENDS]
    if unknown:
        raise ValueError(
            f"dataset '{name}'.modalities {unknown} name no registered front end "
            "(see 'xmodal list frontends'); register them or fix the names"
        )
    options = getattr(entry, "options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise TypeError(
            f"dataset '{name}'.options must be a dataclass type (a dataset has options: an "
            f"empty dataclass for none), got {options!r}"
        )
    for method, call in REQUIRED_METHODS.items():
        _check_method(name, entry, method, call, required=True)
    for method, call in OPTIONAL_METHODS.items():
        _check_method(name, entry, method, call, required=False)
    labelled = getattr(entry, "labelled", True)
    if not isinstance(labelled, bool):
        raise TypeError(f"dataset '{name}'.labelled must be True or False, got {labelled!r}")
    example = getattr(entry, "example_options", None)
    if example is not None:
        if not isinstance(example, dict):
            raise TypeError(
                f"dataset '{name}'.example_options must be a dict of options, got {example!r}"
            )
        fields = [f.name for f in dataclasses.fields(options) if f.init]
        extra = sorted(set(example) - set(fields))
        if extra:
            raise ValueError(
                f"dataset '{name}'.example_options sets {extra}, not options of "
                f"{options.__name__} ({', '.join(fields) or 'none'})"
            )


def _check_method(
    name: str,
    entry: type,
    method: str,
    call: tuple[tuple[str, ...], tuple[str, ...]],
    required: bool,
) -> None:
    """Raise ``TypeError`` unless ``entry.method`` exists (if ``required``) and takes ``call``."""
    positional, keywords = call
    shown = ", ".join([*positional, *(f"{k}=..." for k in keywords)])
    if not hasattr(entry, method):
        if required:
            raise TypeError(f"dataset '{name}' has no {method}({shown}) method; add one")
        return
    if not callable(getattr(entry, method)):
        raise TypeError(f"dataset '{name}'.{method} must be a method {method}({shown})")
    if not accepts(entry, method, len(positional), keywords):
        raise TypeError(
            f"dataset '{name}'.{method} takes {signature_of(entry, method)}, but xmodal calls "
            f"it as {method}({shown}); change its parameters"
        )


def _instance(source: Any) -> Any:
    return source() if isinstance(source, type) else source


def dataset_modalities(source: Any, options: Any) -> tuple[str, ...]:
    """The modalities ``source`` (a registered dataset class or instance) serves with ``options``.

    Its ``modalities_for(options)`` when it has one, else its ``modalities``; empty = not known
    yet (nothing is checked against it).
    """
    if options is not None and hasattr(source, "modalities_for"):
        return tuple(_instance(source).modalities_for(options))
    return tuple(getattr(source, "modalities", ()))


def dataset_labelled(source: Any, options: Any) -> bool:
    """Whether ``source`` with ``options`` has labels.

    Its ``labelled_for(options)`` when it has one, else its ``labelled`` attribute (default True).
    """
    if options is not None and hasattr(source, "labelled_for"):
        return bool(_instance(source).labelled_for(options))
    return bool(getattr(source, "labelled", True))


def describe_dataset_file(
    source: Any, path: Path, options: Any, progress: Callable[..., None] | None = None
) -> list[Section] | None:
    """The tables with which ``source`` (a registered dataset class or instance) describes ``path``.

    None when it does not recognise the file, or describes no files.
    """
    if not hasattr(source, "describe_file"):
        return None
    sections = _instance(source).describe_file(path, options, progress)
    return None if sections is None else list(sections)


def human_bytes(size: float) -> str:
    """``2_972_000_000`` -> ``"2.8 GiB"`` (powers of 1024, 3 significant digits)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
