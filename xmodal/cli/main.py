"""The ``xmodal`` command: ``run``, ``data``, ``list`` and ``--version``.

``main(argv)`` returns an exit status instead of exiting, so tests can call it. A user mistake
(an :class:`~xmodal.core.errors.XmodalError`, or bad arguments) prints one line and returns 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

import xmodal
from xmodal.cli.data_commands import add_data_parser, run_data_command
from xmodal.cli.launch import add_launch_arguments, check_launch_arguments, launch, wants_launch
from xmodal.core.atomic import output_error
from xmodal.core.errors import OutputError, XmodalError

LIST_KINDS = ("encoders", "losses", "datasets", "probes", "pipelines", "modalities", "stages")


class _UsageError(XmodalError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xmodal", description="Cross-modal knowledge distillation with WCoRD.")
    parser.add_argument("--version", action="version", version=f"xmodal {xmodal.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run a pipeline end to end (cached, resumable)")
    run.add_argument("pipeline", help="pipeline name (see 'xmodal list pipelines')")
    run.add_argument("--out", help="run directory (default runs/PIPELINE)")
    run.add_argument("--config", help="YAML file overriding the pipeline's config")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key, e.g. --set distill.optim.epochs=5 (repeatable)")
    run.add_argument("--data", help="the dataset file, for datasets that read one (nyu-depth)")
    add_launch_arguments(run)
    add_data_parser(sub, _Parser)
    lst = sub.add_parser("list", help="list registered components")
    lst.add_argument("kind", nargs="?", choices=LIST_KINDS, help="which registry (default: all)")
    return parser


def _list(kind: str | None, console: Console) -> None:
    from xmodal.core.registries import ALL

    for name in [kind] if kind else LIST_KINDS:
        registry = ALL[name]
        table = Table(title=name, show_header=False, title_justify="left")
        for entry in registry.names():
            table.add_row(entry, registry.describe(entry))
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    console = Console()
    err = Console(stderr=True)
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        import xmodal.registration  # noqa: F401  (fills every registry; after --help/--version)

        if args.command == "run" and wants_launch(args):
            from xmodal.pipelines import resolve_config

            check_launch_arguments(args)
            # a typo fails here, once, before N processes start
            resolve_config(args.pipeline, args.config, args.overrides, args.data)
            return launch(args, argv)
        if args.command == "run":
            from xmodal.pipelines import run_pipeline

            run_pipeline(args.pipeline, out=args.out, config_file=args.config,
                         overrides=args.overrides, console=console, data_path=args.data)
        elif args.command == "data":
            run_data_command(args, console)
        elif args.command == "list":
            _list(args.kind, console)
        else:
            build_parser().print_help()
            return 2
    except XmodalError as exc:
        rank = os.environ.get("RANK", "0")  # one line per process of a launched job
        err.print(f"{'' if rank == '0' else f'[rank {rank}] '}error: {exc}", soft_wrap=True,
                  highlight=False, markup=False)
        return 2
    except OSError as exc:  # a writer outside xmodal.core.atomic: full disk, read-only, ...
        error = output_error(exc, Path(exc.filename or "."))
        if not isinstance(error, OutputError):
            raise
        err.print(f"error: {error}", soft_wrap=True, highlight=False, markup=False)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        err.print("interrupted: finished stages are kept; run the same command again to resume")
        return 130
    return 0


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
