"""``xmodal data``: inspect, prepare and download datasets.

xmodal data info PATH [--set data.DATASET.KEY=VALUE ...]
                                            validate a data file or manifest, describe it
                                            (exit 1: a file with problems)
xmodal data prepare DATASET [--data PATH] [--out DIR] [--set KEY=VALUE ...]
xmodal data download DATASET [--to DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option (into ``overrides``) to ``parser``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def add_data_parser(sub: Any, parser_class: type, add_command: Callable[..., Any]) -> None:
    """Add ``xmodal data`` and its verbs to the subcommands ``sub``."""
    data = add_command(
        sub,
        "data",
        "inspect, prepare, convert and download datasets",
        "xmodal data info nyu_depth_v2_labeled.mat",
        "xmodal data prepare nyu-depth --data nyu_depth_v2_labeled.mat",
        "xmodal data download nyu-depth --to ~/data",
        "xmodal data from-ts X_TRAIN.ts X_TEST.ts --to x --column accelerometer=0-2",
    )
    verbs = data.add_subparsers(
        dest="verb", parser_class=parser_class, required=True, metavar="VERB"
    )
    info = add_command(
        verbs,
        "info",
        "validate a data file and describe its contents and sizes",
        "xmodal data info nyu_depth_v2_labeled.mat",
        "xmodal data info runs/scenes/data/scenes/data.h5",
        "xmodal data info manifest.csv",
        "xmodal data info manifest.csv --set data.paired.ignore_columns=[notes]",
    )
    info.add_argument(
        "path",
        help="a dataset's file (the NYU labeled .mat, a dataset cache, a paired manifest "
        ".csv or .jsonl, a plugin's) or any HDF5 file; exits 1 when it has problems",
    )
    add_overrides(
        info,
        "an option of the file's dataset, e.g. data.paired.ignore_columns=[notes], or "
        "plugins=[module] (repeatable)",
    )
    prep = add_command(
        verbs,
        "prepare",
        "run a dataset's preprocessing alone",
        "xmodal data prepare scenes --set data.scenes.image_size=64",
        "xmodal data prepare nyu-depth --data nyu_depth_v2_labeled.mat --out runs/nyu",
    )
    prep.add_argument("dataset", help="a registered dataset (see 'xmodal list datasets')")
    prep.add_argument(
        "--data", help="source file (nyu-depth: nyu_depth_v2_labeled.mat; paired: the manifest)"
    )
    prep.add_argument("--out", help="run directory whose cache to fill (default: runs/DATASET)")
    add_overrides(prep, "override one config key (repeatable)")
    dl = add_command(
        verbs,
        "download",
        "download a dataset's source file (resumable)",
        "xmodal data download nyu-depth --to ~/data",
    )
    dl.add_argument("dataset", help="dataset to download (nyu-depth)")
    dl.add_argument("--to", default=".", help="folder to save into (default: current folder)")
    ts = add_command(
        verbs,
        "from-ts",
        "write a paired manifest from .ts archives (UEA/UCR, sktime, aeon), one column per sensor",
        "xmodal data from-ts BasicMotions_TRAIN.ts BasicMotions_TEST.ts --to basicmotions "
        "--column accelerometer=0-2 --column gyroscope=3-5",
    )
    ts.add_argument("train", help="the archive's train file (.ts)")
    ts.add_argument("test", nargs="?", help="its test file (default: hold out --test-fraction)")
    ts.add_argument("--to", required=True, help="a new or empty folder for the manifest")
    ts.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="a sequence modality and its 0-based dimensions, e.g. gyroscope=3-5 (repeatable; "
        "default: one 'sequence' column of every dimension)",
    )
    ts.add_argument("--val-fraction", type=float, default=0.2, help="of the train file's rows")
    ts.add_argument("--test-fraction", type=float, default=0.2, help="without a test file")
    ts.add_argument("--seed", type=int, default=0, help="seeds the stratified hold-outs")
    ts.add_argument(
        "--window",
        type=int,
        default=0,
        help="cut each case into non-overlapping windows of this many steps, each a row in its "
        "case's split (default 0: whole cases)",
    )


def preparation(dataset: str) -> tuple[str, list[str], list[str]]:
    """How ``xmodal data prepare DATASET`` runs: (pipeline, its data stages, overrides).

    The pipeline is the first whose shipped config selects the dataset (its options are that
    config's), else the default pipeline with ``data.name`` set; its data stages are those
    that produce the dataset.
    """
    from xmodal.core.config import read_yaml
    from xmodal.core.registry import DATASETS, PIPELINES, STAGES
    from xmodal.pipelines.config import RunConfig

    DATASETS.check_name(dataset)
    chosen, overrides = RunConfig.pipeline, [f"data.name={dataset}"]
    for name in PIPELINES.names():
        path = PIPELINES.get(name).config_path()
        data = read_yaml(path).get("data") if path is not None else None
        if isinstance(data, dict) and data.get("name") == dataset:
            chosen, overrides = name, []
            break
    stages = [s for s in PIPELINES.get(chosen).stages if "dataset" in STAGES.get(s).produces]
    return chosen, stages, overrides


def run_data_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``xmodal data VERB``; the exit status (1: ``info`` found a file's problems)."""
    from xmodal.cli.data_info import PROBLEMS, info

    if args.verb == "info":
        return 1 if PROBLEMS in info(Path(args.path), console, args.overrides) else 0
    if args.verb == "prepare":
        from xmodal.pipelines import run_pipeline

        pipeline, stages, overrides = preparation(args.dataset)
        result = run_pipeline(
            pipeline,
            out=args.out,
            overrides=[*overrides, *args.overrides],
            console=console,
            data_path=args.data,
            stages=stages,
        )
        console.print(f"prepared: {result.run_dir / 'data'}")
    elif args.verb == "from-ts":
        manifest = _from_ts(args)
        console.print(f"wrote {manifest}")
        info(manifest, console)
    elif args.verb == "download":
        from xmodal.data.download import download_known

        path = download_known(args.dataset, Path(args.to))
        console.print(f"downloaded {path}")
        info(path, console)
    return 0


def _from_ts(args: argparse.Namespace) -> Path:
    from xmodal.core.errors import DataError
    from xmodal.data.paired.from_ts import parse_channels, write_ts_manifest

    columns: dict[str, list[int]] = {}
    for given in args.column:
        name, sep, spec = given.partition("=")
        if not sep or not name:
            raise DataError(f"--column {given!r}: write NAME=DIMS, e.g. gyroscope=3-5")
        if name in columns:
            raise DataError(f"--column {name!r} is given twice")
        columns[name] = parse_channels(spec)
    return write_ts_manifest(
        Path(args.train),
        Path(args.to),
        columns or None,  # none given: one sequence column of every dimension
        test=Path(args.test) if args.test else None,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        window=args.window,
    )
