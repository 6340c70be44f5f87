"""Paired recordings listed in a manifest as a registered dataset source: ``paired``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py

from xmodal.core.errors import DataError
from xmodal.core.registry import DATASETS
from xmodal.data.arrays import SplitData
from xmodal.data.hdf5_split import HDF5Split, as_long
from xmodal.data.paired.cache import CACHE_FORMAT, build_cache
from xmodal.data.paired.config import PairedOptions
from xmodal.data.paired.manifest import files_digest, manifest_digest, read_manifest
from xmodal.data.paired.problems import ROW_NUMBERS, summarise
from xmodal.data.paired.readers import sequence_frontend_kwargs
from xmodal.data.paired.rules import check_rules, rules_message
from xmodal.data.paired.splits import SPLITS
from xmodal.data.paired.validate import Validation, validate_manifest
from xmodal.data.source import PROBLEMS, LoadedDataset, Section


@DATASETS.register("paired")
class PairedSource:
    """Your own paired recordings, listed in a CSV/JSONL manifest with one row per sample.

    One column per modality (file paths), optional labels and splits.
    """

    name = "paired"
    modalities: tuple[str, ...] = ()  # the manifest's columns: see modalities_for
    options = PairedOptions

    def modalities_for(self, options: PairedOptions) -> tuple[str, ...]:
        """The manifest's modality columns (none known before a manifest is given)."""
        return (
            read_manifest(options.path, options.ignore_columns).modalities if options.path else ()
        )

    def labelled_for(self, options: PairedOptions) -> bool:
        """Whether the manifest has a ``label`` column (assumed until a manifest is given)."""
        return (
            read_manifest(options.path, options.ignore_columns).labelled if options.path else True
        )

    def fingerprint(self, options: PairedOptions) -> dict[str, object]:
        """The manifest's SHA-256 and the sizes and times of its files (the data unit's key)."""
        manifest = read_manifest(options.path, options.ignore_columns)
        return {"manifest": manifest_digest(manifest.path), "files": files_digest(manifest)}

    def prepare(
        self, options: PairedOptions, cache_path: Path, progress: Callable[..., None] | None = None
    ) -> Path:
        """Check the manifest, validate every row, then convert the rows into ``cache_path``.

        A broken manifest-wide rule (:mod:`~xmodal.data.paired.rules`) stops before any file is
        read; a row problem stops, or leaves bad rows out with ``on_bad_sample=skip``.
        """
        manifest = read_manifest(options.path, options.ignore_columns)
        rules = check_rules(manifest, options)
        if rules.errors:
            raise DataError(rules_message(manifest, rules.errors))
        validation = validate_manifest(
            manifest, options, _phase(progress, "validate paired"), rules
        )
        if validation.problems and options.on_bad_sample == "stop":
            raise DataError(stop_message(validation))
        _check_splits(validation)
        return build_cache(validation, options, cache_path, _phase(progress, "convert paired"))

    def load(self, cache_path: Path) -> LoadedDataset:
        """The splits streamed from the cache, with the skipped rows and allowed warnings."""
        try:
            with h5py.File(cache_path, "r") as f:
                if f.attrs.get("format") != CACHE_FORMAT:
                    raise KeyError("format")
                modalities = json.loads(f.attrs["modalities"])
                labelled = bool(f.attrs["labelled"])
                keys = [*modalities, *(["label"] if labelled else []), "row"]
                classes = json.loads(f.attrs["classes"])
                sample_rate = int(f.attrs["sample_rate"])
                skipped = json.loads(f.attrs["skipped_rows"])
                notes = json.loads(f.attrs.get("warnings", "[]"))
        except (OSError, KeyError) as exc:
            raise DataError(
                f"paired cache '{cache_path}' is unreadable or incomplete ({exc}); "
                "delete it and rerun preprocessing"
            ) from None
        splits: dict[str, SplitData] = {
            split: HDF5Split(
                cache_path, {key: f"{split}/{key}" for key in keys}, transforms={"label": as_long}
            )
            for split in SPLITS
        }  # streamed, a batch of rows at a time
        return LoadedDataset(
            splits=splits,
            num_classes=len(classes),
            class_names=classes,
            frontend_kwargs={
                **({"audio": {"sample_rate": sample_rate}} if "audio" in modalities else {}),
                **sequence_frontend_kwargs(cache_path, modalities),  # C, train mean and std
            },
            skipped_rows=skipped,
            notes=notes,
        )

    def describe_file(
        self,
        path: Path,
        options: PairedOptions,
        progress: Callable[..., None] | None = None,
    ) -> list[Section] | None:
        """Describe a manifest (``.csv``/``.jsonl``), for ``xmodal data info``.

        Rows, modalities, label counts, splits and every problem, after reading each file once
        (the manifest-wide rules first, then each row); None for any other file.
        """
        from collections import Counter

        from xmodal.core.registry import FRONTENDS
        from xmodal.data.paired.readers import READERS

        if path.suffix.lower() not in (".csv", ".jsonl"):
            return None
        manifest = read_manifest(path, options.ignore_columns)
        rules = check_rules(manifest, options)  # before any file is read: cells and paths only
        validation = validate_manifest(
            manifest, options, _phase(progress, "validate manifest"), rules
        )
        modalities = []
        for column in manifest.modalities:
            kinds = Counter(
                manifest.file(cell).suffix.lower().lstrip(".") or "?"
                for row in manifest.rows
                if (cell := row.get(column))
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
        found = (
            [f"{len(errors)} manifest-wide (rules of the whole manifest)"] if errors else []
        ) + ([f"{len(validation.problems)} in {len(bad)} rows"] if bad else [])
        ignored = [c for c in manifest.ignored if c in manifest.columns]
        ignored_row = [["ignored columns", ", ".join(ignored) or "none present"]]
        overview = [
            ["file", str(path)],
            ["format", f"paired manifest ({manifest.format})"],
            [
                "rows",
                f"{len(manifest.rows)} ({len(bad)} with problems)"
                if bad
                else str(len(manifest.rows)),
            ],
            ["modalities", "; ".join(modalities)],
            *(ignored_row if manifest.ignored else []),
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


def stop_message(validation: Validation) -> str:
    """The one error of ``on_bad_sample=stop``: one line per problem (the first 20)."""
    manifest = validation.manifest
    bad = validation.bad_rows
    lines = "\n".join(f"  {line}" for line in summarise(validation.problems))
    return (
        f"manifest '{manifest.path}': {len(bad)} of {len(manifest.rows)} rows have problems "
        f"({ROW_NUMBERS}):\n{lines}\nfix them, or set data.paired.on_bad_sample=skip to "
        "leave those rows out"
    )


def _rows_cell(rows: tuple[int, ...], limit: int = 8) -> str:
    """A finding's rows for a table's row column: ``1, 5`` (``...`` past ``limit``)."""
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")


def _check_splits(validation: Validation) -> None:
    kept = [validation.splits[n - 1] for n in validation.good_rows]
    empty = [split for split in SPLITS if split not in kept]
    if empty:
        bad = len(validation.bad_rows)
        skipped = f" after leaving out {bad} bad rows" if bad else ""
        raise DataError(
            f"manifest '{validation.manifest.path}': split {', '.join(empty)} has no "
            f"rows{skipped}; every split needs some (a 'split' column, or more rows "
            "for data.paired.val_fraction / test_fraction)"
        )


def _phase(
    progress: Callable[..., None] | None, description: str
) -> Callable[[int, int], None] | None:
    """``progress`` with the phase's name shown as the bar's description."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, description=description)
