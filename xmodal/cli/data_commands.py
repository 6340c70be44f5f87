"""``xmodal data``: inspect, prepare and download datasets.

xmodal data info PATH [--set data.paired.KEY=VALUE ...]
                                            validate a data file or manifest, describe it
                                            (exit 1: a manifest with problems)
xmodal data prepare DATASET [--data PATH] [--out DIR] [--set KEY=VALUE ...]
xmodal data download DATASET [--to DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from xmodal.cli.data_info import PROBLEMS, info

#: which pipeline's config describes a dataset's default options, by dataset name
_PIPELINE_OF = {"scenes": "scenes", "nyu-depth": "nyu-depth", "paired": "paired"}


def add_data_parser(sub: Any, parser_class: type, add_command: Callable[..., Any]) -> None:
    data = add_command(
        sub,
        "data",
        "inspect, prepare and download datasets",
        "xmodal data info nyu_depth_v2_labeled.mat",
        "xmodal data prepare nyu-depth --data nyu_depth_v2_labeled.mat",
        "xmodal data download nyu-depth --to ~/data",
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
        help="an HDF5 file (the NYU labeled .mat, or a dataset cache), "
        "or a paired manifest (.csv or .jsonl); exits 1 when a "
        "manifest has problems",
    )
    info.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a manifest's option, data.paired.KEY=VALUE, or plugins=[module] (repeatable)",
    )
    prep = add_command(
        verbs,
        "prepare",
        "run a dataset's preprocessing alone",
        "xmodal data prepare scenes --set data.scenes.image_size=64",
        "xmodal data prepare nyu-depth --data nyu_depth_v2_labeled.mat --out runs/nyu",
    )
    prep.add_argument("dataset", choices=sorted(_PIPELINE_OF))
    prep.add_argument(
        "--data", help="source file (nyu-depth: nyu_depth_v2_labeled.mat; paired: the manifest)"
    )
    prep.add_argument("--out", help="run directory whose cache to fill (default: runs/DATASET)")
    prep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable)",
    )
    dl = add_command(
        verbs,
        "download",
        "download a dataset's source file (resumable)",
        "xmodal data download nyu-depth --to ~/data",
    )
    dl.add_argument("dataset", help="dataset to download (nyu-depth)")
    dl.add_argument("--to", default=".", help="folder to save into (default: current folder)")


def run_data_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``xmodal data VERB``; the exit status (1: ``info`` found a manifest's problems)."""
    if args.verb == "info":
        return 1 if PROBLEMS in info(Path(args.path), console, args.overrides) else 0
    if args.verb == "prepare":
        from xmodal.pipelines import run_pipeline

        result = run_pipeline(
            _PIPELINE_OF[args.dataset],
            out=args.out,
            overrides=args.overrides,
            console=console,
            data_path=args.data,
            stages=["preprocess"],
        )
        console.print(f"prepared: {result.run_dir / 'data'}")
    elif args.verb == "download":
        from xmodal.data.download import download_known

        path = download_known(args.dataset, Path(args.to))
        console.print(f"downloaded {path}")
        info(path, console)
    return 0
