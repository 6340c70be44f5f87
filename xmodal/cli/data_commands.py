"""``xmodal data``: inspect, prepare and download datasets.

    xmodal data info PATH                       validate a data file, print its contents
    xmodal data prepare DATASET [--data PATH] [--out DIR] [--set KEY=VALUE ...]
    xmodal data download DATASET [--to DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


#: which pipeline's config describes a dataset's default options, by dataset name
_PIPELINE_OF = {"scenes": "scenes", "nyu-depth": "nyu-depth"}


def add_data_parser(sub: Any, parser_class: type) -> None:
    data = sub.add_parser("data", help="inspect, prepare and download datasets")
    verbs = data.add_subparsers(dest="verb", parser_class=parser_class, required=True)
    info = verbs.add_parser("info", help="validate a data file and print its contents and sizes")
    info.add_argument("path")
    prep = verbs.add_parser("prepare", help="run a dataset's preprocessing alone")
    prep.add_argument("dataset", choices=sorted(_PIPELINE_OF))
    prep.add_argument("--data", help="source file (nyu-depth: nyu_depth_v2_labeled.mat)")
    prep.add_argument("--out", help="run directory whose cache to fill (default runs/DATASET)")
    prep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    dl = verbs.add_parser("download", help="download a dataset's source file (resumable)")
    dl.add_argument("dataset")
    dl.add_argument("--to", default=".", help="folder to save into (default: current folder)")


def run_data_command(args: argparse.Namespace, console: Console) -> None:
    if args.verb == "info":
        _info(Path(args.path), console)
    elif args.verb == "prepare":
        from xmodal.pipelines import run_pipeline

        result = run_pipeline(_PIPELINE_OF[args.dataset], out=args.out, overrides=args.overrides,
                              console=console, data_path=args.data, stages=["preprocess"])
        console.print(f"prepared: {result.run_dir / 'data'}")
    elif args.verb == "download":
        from xmodal.data.download import download_known

        path = download_known(args.dataset, Path(args.to))
        console.print(f"downloaded {path}")
        _info(path, console)


def _info(path: Path, console: Console) -> None:
    """Recognise the file's format, validate it, and print a summary table."""
    from xmodal.data.hdf5 import open_hdf5

    with open_hdf5(path, "xmodal reads HDF5 files (the NYU labeled file in MATLAB v7.3, a scenes "
                         "cache or an NYU cache); replace a damaged file by downloading or "
                         "copying it again") as f:
        fmt = f.attrs.get("format")
        is_nyu = "images" in f and "depths" in f
    if is_nyu:
        from xmodal.data.nyu.reader import validate

        summary = validate(path)
    elif fmt == "xmodal-scenes":
        from xmodal.data.scenes import read_scenes_info

        summary = read_scenes_info(path)
    else:
        summary = _generic_summary(path)
    table = Table(title=str(path), show_header=False, title_justify="left")
    for key, value in summary.items():
        table.add_row(str(key), _short(value))
    console.print(table)


def _generic_summary(path: Path) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {"size_bytes": path.stat().st_size}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(
            name, f"{obj.shape} {obj.dtype}") if hasattr(obj, "shape") else None)
    return out


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
