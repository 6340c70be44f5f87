"""``xmodal data info FILE``: recognise a data file, validate it, and describe it in tables.

Four kinds are known: the NYU-Depth V2 labeled file (frames, image size, the official split,
scene types with counts), a generated ``scenes`` cache (splits, class counts, modalities), a
``paired`` manifest (``.csv``/``.jsonl``: rows, modalities, label counts, splits and every
problem, after reading each file once) and any other HDF5 file (its arrays). Sizes are printed
in human units; problems get their own line instead of an exception, so a user sees everything
that is wrong at once. A manifest's problems (the manifest-wide rules of
:mod:`xmodal.data.paired.rules`, then each bad row) make a ``problems`` section, and
``xmodal data info`` then exits 1; ``--set data.paired.KEY=VALUE`` gives the manifest's options
(``ignore_columns``, ``allow_duplicates``, ``allow_outside``, ``classes``, ...) and
``--set plugins=[module]`` imports a module that registers front ends.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from xmodal.core.errors import ConfigError
from xmodal.core.resources import resource_path

#: one (title, columns, rows) table of the description
Section = tuple[str, list[str], list[list[str]]]
#: the title of the section listing a manifest's problems (present: ``data info`` exits 1)
PROBLEMS = "problems"


def human_bytes(size: float) -> str:
    """``2_972_000_000`` -> ``"2.8 GiB"`` (powers of 1024, 3 significant digits)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def describe(
    path: Path, console: Console | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> list[Section]:
    """The tables describing ``path``; raises DataError when it cannot be opened at all.
    ``console``: where a manifest's validation draws its progress bar (None: no bar);
    ``overrides``: a manifest's ``data.paired.KEY=VALUE`` options (see :func:`paired_options`).
    """
    from xmodal.data.hdf5 import open_hdf5

    if path.suffix.lower() in (".csv", ".jsonl"):
        return _paired_manifest(path, console, paired_options(path, overrides))
    if overrides:
        raise ConfigError(
            f"--set: '{path}' is not a paired manifest (.csv or .jsonl); data info "
            "takes settings for manifests only"
        )
    with open_hdf5(
        path,
        "xmodal reads HDF5 files (the NYU labeled file in MATLAB v7.3, a scenes "
        "cache or an NYU cache); replace a damaged file by downloading or "
        "copying it again",
    ) as f:
        fmt = f.attrs.get("format")
        is_nyu = "images" in f and "depths" in f
    if is_nyu:
        return _nyu_labeled(path)
    if fmt == "xmodal-scenes":
        return _scenes_cache(path)
    return _generic(path, str(fmt) if fmt is not None else "HDF5")


def print_description(sections: list[Section], console: Console) -> None:
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


def _nyu_labeled(path: Path) -> list[Section]:
    from xmodal.data.nyu.facts import load_nyu_facts
    from xmodal.data.nyu.reader import NYULabeledFile, validate

    info = validate(path)
    with NYULabeledFile(path) as nyu:
        scene_types = nyu.scene_types()
    frames = info["frames"]
    splits = json.loads(resource_path("datasets", "nyu-depth-v2/splits.json").read_text())
    problems = []
    if frames == splits["num_frames"]:
        split_text = f"official: {len(splits['train'])} train, {len(splits['test'])} test"
    else:
        split_text = "none (the official split needs all 1449 frames)"
        problems.append(
            f"{frames} frames, not the full labeled set's {splits['num_frames']}: "
            "a subset or a different file"
        )
    facts = load_nyu_facts()
    known = facts.scene_to_10
    unknown = sorted(set(scene_types) - set(known))
    if unknown:
        problems.append(f"scene types without a 10-class mapping: {', '.join(unknown)}")
    overview = [
        ["file", str(path)],
        ["format", "NYU-Depth V2 labeled set (MATLAB v7.3)"],
        ["size", human_bytes(info["file_size"])],
        ["frames", str(frames)],
        ["image size", f"{info['width']} x {info['height']} pixels (W x H)"],
        ["splits", split_text],
        ["scene types", f"{len(set(scene_types))} types"],
        ["problems", "; ".join(problems) or "none found"],
    ]
    counts = Counter(scene_types)
    scenes = [
        [
            name,
            str(count),
            f"{100 * count / frames:.1f}%",
            facts.scene10_names[known[name]] if name in known else "?",
        ]
        for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    arrays = [
        [key, " x ".join(map(str, reversed(v["shape"]))), v["dtype"]]
        for key, v in info["keys"].items()
    ]
    return [
        ("NYU-Depth V2 labeled file", ["", ""], overview),
        ("scene types", ["scene type", "frames", "share", "10-class scene"], scenes),
        ("arrays (MATLAB order)", ["key", "shape", "dtype"], arrays),
    ]


def _scenes_cache(path: Path) -> list[Section]:
    import h5py

    from xmodal.data.scenes import read_scenes_info

    info = read_scenes_info(path)
    classes = list(info["classes"])
    counts: dict[str, Counter] = {}
    shapes: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        for split in info["splits"]:
            counts[split] = Counter(int(v) for v in f[split]["label"][()])
            for key, array in f[split].items():
                shapes.setdefault(
                    key, f"{' x '.join(map(str, array.shape[1:])) or 'scalar'} {array.dtype}"
                )
    size = int(info["image_size"])
    overview = [
        ["file", str(path)],
        ["format", f"xmodal scenes cache, version {info['version']}"],
        ["size", human_bytes(path.stat().st_size)],
        ["rows", ", ".join(f"{n} {s}" for s, n in info["splits"].items())],
        ["image size", f"{size} x {size} pixels"],
        ["audio", f"{int(info['audio_length'])} samples at {int(info['sample_rate'])} Hz"],
        [
            "modalities",
            ", ".join(
                f"{k} ({v})"
                for k, v in shapes.items()
                if k not in ("label", "num_objects", "semantic")
            )
            + f", points ({_num_points(info['config'])} x 3 float32, from depth at load)",
        ],
        [
            "labels",
            f"scene class per row ({len(classes)} classes)"
            + (", per-pixel classes" if "semantic" in shapes else ""),
        ],
    ]
    splits = list(counts)
    rows = [[name, *(str(counts[s][i]) for s in splits)] for i, name in enumerate(classes)]
    empty = [
        f"class '{classes[i]}' has no {s} rows"
        for s in splits
        for i in range(len(classes))
        if counts[s][i] == 0
    ]
    overview.append(["problems", "; ".join(empty) or "none found"])
    return [
        ("scenes dataset cache", ["", ""], overview),
        ("scene classes per split", ["class", *splits], rows),
    ]


def paired_options(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The :class:`~xmodal.data.paired.config.PairedConfig` of ``path`` with ``data info``'s
    ``--set data.paired.KEY=VALUE`` items; ``--set plugins=[module]`` imports the modules (front
    ends registered in code make their columns known). Other keys are a ConfigError.
    """
    from xmodal.core.config import load_config, parse_override
    from xmodal.data.paired import PairedConfig
    from xmodal.pipelines.config import RunConfig

    own = []
    for text in overrides:
        keys, _ = parse_override(text)
        if keys == ["plugins"]:
            continue
        if keys[:2] != ["data", "paired"] or len(keys) < 3 or keys[2] == "path":
            raise ConfigError(
                f"--set '{text}': data info takes data.paired.KEY=VALUE (the "
                "manifest's options, e.g. data.paired.ignore_columns=[notes]) and "
                "plugins=[module]"
            )
        own.append(f"{'.'.join(keys[2:])}={text.partition('=')[2]}")
    RunConfig.before_load({}, list(overrides))
    return load_config(PairedConfig, overrides=own, base={"path": str(path)})


def _paired_manifest(path: Path, console: Console | None, options: Any) -> list[Section]:
    from xmodal.core.registry import FRONTENDS
    from xmodal.data.paired import read_manifest, validate_manifest
    from xmodal.data.paired.problems import ROW_NUMBERS, summarise
    from xmodal.data.paired.readers import READERS
    from xmodal.data.paired.rules import check_rules
    from xmodal.data.paired.splits import SPLITS
    from xmodal.training.progress import progress_bar

    manifest = read_manifest(path, options.ignore_columns)
    rules = check_rules(manifest, options)  # before any file is read: cells and paths only
    with progress_bar(console is not None, console) as bar:
        job = bar.add_task("validate manifest", total=len(manifest.rows), info="")
        validation = validate_manifest(
            manifest,
            options,
            lambda done, total: bar.update(job, completed=done, total=total),
            rules,
        )
    modalities = []
    for column in manifest.modalities:
        kinds = Counter(
            manifest.file(row[column]).suffix.lower().lstrip(".") or "?"
            for row in manifest.rows
            if row.get(column)
        )
        files = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        shape = None if column in READERS else validation.shapes.get(column)  # .npy arrays
        stored = (
            f" of {' x '.join(map(str, shape))} {validation.dtypes.get(column, '')}"
            if shape
            else ""
        )
        known = "" if column in FRONTENDS else f"; no front end '{column}' is registered"
        modalities.append(f"{column} ({files or 'no files'}{stored.rstrip()}{known})")
    labels = validation.labels
    split_counts = Counter(s for s in validation.splits if s)
    if "split" in manifest.columns:
        split_text = "from the split column: "
    else:
        split_text = (
            f"seeded (no split column; val {options.val_fraction:g}, test "
            f"{options.test_fraction:g}, seed {options.seed}): "
        )
    split_text += ", ".join(f"{split_counts[s]} {s}" for s in SPLITS)
    bad = validation.bad_rows
    errors, warnings = rules.errors, rules.warnings
    mixed = any(f.column == "label" for f in errors)
    found = ([f"{len(errors)} manifest-wide (rules of the whole manifest)"] if errors else []) + (
        [f"{len(validation.problems)} in {len(bad)} rows"] if bad else []
    )
    overview = [
        ["file", str(path)],
        ["format", f"paired manifest ({manifest.format})"],
        [
            "rows",
            f"{len(manifest.rows)} ({len(bad)} with problems)" if bad else str(len(manifest.rows)),
        ],
        ["modalities", "; ".join(modalities)],
        *(
            [
                [
                    "ignored columns",
                    ", ".join(c for c in manifest.ignored if c in manifest.columns)
                    or "none present",
                ]
            ]
            if manifest.ignored
            else []
        ),
        [
            "labels",
            "class names and integers mixed (see problems)"
            if mixed
            else f"{len(labels.class_names)} classes"
            if labels
            else "none (no label column): retrieval probes only",
        ],
        ["splits", split_text],
        ["problems", f"{'; '.join(found)} ({ROW_NUMBERS})" if found else "none found"],
    ]
    if warnings:
        overview.append(["warnings", f"{len(warnings)} (allowed by options)"])
    sections: list[Section] = [("paired manifest", ["", ""], overview)]
    if labels is not None:
        counts = Counter(
            (validation.splits[i], value)
            for i, value in enumerate(labels.values)
            if value is not None
        )
        rows = [
            [name, *(str(counts[(s, i)]) for s in SPLITS)]
            for i, name in enumerate(labels.class_names)
        ]
        sections.append(("labels per split", ["class", *SPLITS], rows))
    if errors or validation.problems:
        rows = [[_rows_cell(f.rows), f.column, f.message] for f in errors]
        lines = summarise(validation.problems)
        listed = sorted(validation.problems, key=lambda p: p.row)[: len(lines)]
        rows += [[str(p.row), p.column, p.message] for p in listed]
        if len(lines) > len(listed):
            rows.append(["", "", lines[-1]])
        sections.append((PROBLEMS, ["row", "column", "problem"], rows))
    if warnings:
        sections.append(
            (
                "warnings (allowed by options)",
                ["row", "column", "warning"],
                [[_rows_cell(f.rows), f.column, f.message] for f in warnings],
            )
        )
    return sections


def _rows_cell(rows: tuple[int, ...], limit: int = 8) -> str:
    """A finding's rows for the table's row column: ``1, 5`` (``...`` past ``limit``)."""
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")


def _num_points(config: dict[str, Any]) -> int:
    """Points per sample of a scenes cache (its config's, or the default for older caches)."""
    from xmodal.data.scenes import ScenesConfig

    return int(config.get("num_points", ScenesConfig.num_points))


def _generic(path: Path, fmt: str) -> list[Section]:
    import h5py

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
        ["format", fmt],
        ["size", human_bytes(path.stat().st_size)],
        ["arrays", str(len(arrays))],
    ]
    return [("HDF5 file", ["", ""], overview), ("arrays", ["key", "shape", "dtype"], arrays)]


def info(
    path: Path, console: Console, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Describe ``path`` on the console; returns the sections (for tests and tools), with a
    :data:`PROBLEMS` section when a manifest has problems.
    """
    sections = describe(path, console, overrides)
    print_description(sections, console)
    return {title: rows for title, _, rows in sections}
