"""``xmodal data info FILE``: recognise a data file, validate it, and describe it in tables.

Each registered dataset is asked in turn to describe the file (its ``describe_file``: the NYU
labeled file, a scenes or cifar100 cache, a ``paired`` manifest, a plugin's own files); a file
no dataset claims is described as plain HDF5 (its arrays). Problems get their own line instead
of an exception, so a user sees everything that is wrong at once; a description with a
``problems`` section (a manifest's problems) makes ``xmodal data info`` exit 1.
``--set data.KEY.OPTION=VALUE`` sets an option of the dataset whose file it is (e.g.
``data.paired.ignore_columns=[notes]``) and ``--set plugins=[module]`` imports a module that
registers components in code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from xmodal.core.config import load_config, parse_override
from xmodal.core.errors import ConfigError
from xmodal.core.registry import DATASETS
from xmodal.data.source import PROBLEMS, Section, describe_dataset_file, human_bytes

__all__ = ["PROBLEMS", "Section", "describe", "human_bytes", "info", "print_description"]


def describe(
    path: Path, console: Console | None = None, overrides: Sequence[str] = ()
) -> list[Section]:
    """The tables describing ``path``; raises DataError when it cannot be opened at all.

    Args:
        path: the file.
        console: where a dataset's validation draws its progress bar (None: no bar).
        overrides: ``data.KEY.OPTION=VALUE`` options of the dataset whose file it is, and
            ``plugins=[module]``.
    """
    by_key, stray = _dataset_overrides(overrides)
    with _progress(console) as progress:
        for name in DATASETS.names():
            key = DATASETS.options_key(name)
            options = _options(name, key, path, by_key.get(key, []))
            if options is _NOT_ITS_FILE:
                continue
            sections = describe_dataset_file(DATASETS.get(name), path, options, progress)
            if sections is not None:
                _refuse_other_settings(name, key, path, by_key, stray)
                return sections
    if by_key or stray:
        text = next(iter(stray), None) or next(iter(by_key.values()))[0]
        raise ConfigError(
            f"--set '{text}': '{path}' is no registered dataset's file; data info takes "
            "a dataset's options for its own files only"
        )
    return _generic(path)


def print_description(sections: list[Section], console: Console) -> None:
    """Print each section as a table (numeric columns right-aligned)."""
    for title, columns, rows in sections:
        table = Table(title=title, title_justify="left", show_header=bool(columns[0]))
        for i, column in enumerate(columns):
            numeric = bool(rows) and all(row[i][:1].isdigit() for row in rows)
            table.add_column(
                column, justify="right" if numeric and columns[0] else "left", overflow="fold"
            )
        for row in rows:
            table.add_row(*row)
        console.print(table)


def info(path: Path, console: Console, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Describe ``path`` on the console.

    Returns:
        The sections by title (for tests and tools), with a :data:`PROBLEMS` section when the
        file has problems.
    """
    sections = describe(path, console, overrides)
    print_description(sections, console)
    return {title: rows for title, _, rows in sections}


_NOT_ITS_FILE = object()


def _dataset_overrides(overrides: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """``({options key: ["OPTION=VALUE", ...]}, [other settings])``; imports ``plugins``."""
    by_key: dict[str, list[str]] = {}
    stray: list[str] = []
    plugins = False
    for text in overrides:
        keys, _ = parse_override(text)
        if keys == ["plugins"]:
            plugins = True
        elif keys[0] == "data" and len(keys) >= 3 and keys[2] != "path":
            by_key.setdefault(keys[1], []).append(f"{'.'.join(keys[2:])}={text.partition('=')[2]}")
        else:
            stray.append(text)
    if plugins:  # modules that register components (front ends, datasets) in code
        from xmodal.pipelines.config import RunConfig

        RunConfig.before_load({}, list(overrides))
    return by_key, stray


def _options(name: str, key: str, path: Path, own: list[str]) -> Any:
    """Dataset ``name``'s options for ``path``, with the user's settings ``own``.

    Its ``path`` option (when it has one) is set to the file; :data:`_NOT_ITS_FILE` when its
    defaults refuse that path.
    """
    options = DATASETS.options_type(name)
    if options is None:
        return None
    base = {"path": str(path)} if "path" in getattr(options, "__dataclass_fields__", {}) else {}
    try:
        return load_config(options, overrides=own, base=base)
    except ConfigError:
        if own:
            raise
        return _NOT_ITS_FILE


def _refuse_other_settings(
    name: str, key: str, path: Path, by_key: dict[str, list[str]], stray: list[str]
) -> None:
    others = stray + [f"data.{k}.{own[0]}" for k, own in by_key.items() if k != key]
    if others:
        raise ConfigError(
            f"--set '{others[0]}': '{path}' is a file of dataset '{name}'; data info takes "
            f"data.{key}.KEY=VALUE (its options, e.g. data.paired.ignore_columns=[notes] for a "
            "manifest) and plugins=[module]"
        )


@contextmanager
def _progress(console: Console | None) -> Iterator[Callable[..., None] | None]:
    """A ``progress(done, total, description=...)`` for a dataset's validation.

    Drawn on ``console`` from its first call; None without a console.
    """
    if console is None:
        yield None
        return
    with ExitStack() as stack:
        bar: Any = None
        job: Any = None

        def progress(done: int, total: int, description: str = "describe") -> None:
            nonlocal bar, job
            if bar is None:
                from xmodal.training.progress import progress_bar

                bar = stack.enter_context(progress_bar(True, console))
                job = bar.add_task(description, total=total, info="")
            bar.update(job, completed=done, total=total, description=description)

        yield progress


def _generic(path: Path) -> list[Section]:
    """Any HDF5 file: its arrays; a clear error for a file that is not HDF5."""
    import h5py

    from xmodal.data.hdf5 import open_hdf5

    names = ", ".join(DATASETS.names())
    with open_hdf5(
        path,
        f"xmodal data info reads the files of its datasets ({names}) and any HDF5 file; "
        "replace a damaged file by downloading or copying it again",
    ) as f:
        fmt = f.attrs.get("format")
    arrays: list[list[str]] = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.append([name, " x ".join(map(str, obj.shape)), str(obj.dtype)])
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    overview = [
        ["file", str(path)],
        ["format", str(fmt) if fmt is not None else "HDF5"],
        ["size", human_bytes(path.stat().st_size)],
        ["arrays", str(len(arrays))],
    ]
    return [("HDF5 file", ["", ""], overview), ("arrays", ["key", "shape", "dtype"], arrays)]
