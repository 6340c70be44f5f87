"""The ``xmodal`` command: ``run``, ``probe``, ``report``, ``data``, ``list`` and ``--version``.

``main(argv)`` returns an exit status instead of exiting, so tests can call it. A user mistake
(an :class:`~xmodal.core.errors.XmodalError`, or bad arguments) prints one line and returns 2;
``xmodal data info`` returns 1 when it lists a file's problems, ``xmodal list KIND`` when an
entry fails to load (its row says why; the others are listed).

Starting is cheap: ``--version``, ``--help`` and ``list`` import no layer above ``core`` (and no
torch), and ``run`` checks every name in its config against the registries' entry points before
it imports the pipelines. Each command imports what it uses when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

import xmodal
from xmodal.cli.data_commands import add_data_parser, add_overrides, run_data_command
from xmodal.core.cache import output_error, write_text_atomic
from xmodal.core.errors import DeprecatedSpelling, OutputError, XmodalError
from xmodal.core.registry import REGISTRIES

LIST_KINDS = tuple(REGISTRIES)


class _UsageError(XmodalError):
    pass


class _Parser(argparse.ArgumentParser):
    """One-line errors; ``later`` adds arguments when the parser is first used.

    So that a subcommand whose arguments come from a heavy module (``run``'s launch flags) costs
    nothing until that subcommand is parsed or its help shown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.later: list[Callable[[argparse.ArgumentParser], None]] = []

    def _complete(self) -> None:
        while self.later:
            self.later.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def error(self, message: str) -> None:  # type: ignore[override]  # one line, not usage + message
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _launch_arguments(parser: argparse.ArgumentParser) -> None:
    from xmodal.cli.launch import add_launch_arguments

    add_launch_arguments(parser)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(sub: Any, name: str, help: str, *examples: str) -> _Parser:
    """A subcommand whose ``--help`` ends with examples."""
    parser: _Parser = sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=_examples(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``xmodal`` parser; building it imports no layer (``run`` adds its flags on use)."""
    parser = _Parser(
        prog="xmodal",
        description="Cross-modal knowledge distillation with WCoRD.",
        epilog=_examples(
            "xmodal run scenes                       # the default pipeline (minutes on a laptop)",
            "xmodal probe runs/scenes                # probe every encoder of a run",
            "xmodal report runs/a runs/b             # compare two runs",
            "xmodal data info nyu_depth_v2_labeled.mat",
            "xmodal list methods",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xmodal {xmodal.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    run = add_command(
        sub,
        "run",
        "run a pipeline end to end (cached, resumable)",
        "xmodal run scenes",
        "xmodal run scenes --set distill.methods=[none,wcord] --set seeds=[0,1,2]",
        "xmodal run nyu-depth --data nyu_depth_v2_labeled.mat --out runs/nyu",
        "xmodal run scenes --num-processes 2",
    )
    run.add_argument("pipeline", help="pipeline name (see 'xmodal list pipelines')")
    run.add_argument("--out", help="run directory (default: runs/PIPELINE)")
    run.add_argument("--config", help="YAML file overriding the pipeline's config")
    add_overrides(
        run,
        "override one config key, e.g. --set distill.optim.epochs=5 (repeatable)",
    )
    run.add_argument("--data", help="the dataset file, for datasets that read one (nyu-depth)")
    run.later.append(_launch_arguments)
    probe = add_command(
        sub,
        "probe",
        "probe an exported encoder, every encoder of a run, or a pretrained backbone",
        "xmodal probe runs/scenes --probes linear,knn,retrieval",
        "xmodal probe runs/scenes/distill/seed0/depth/wcord --probes linear,knn",
        "xmodal probe resnet18 --modality rgb --data scenes --probes knn",
        "xmodal probe timm --option model=vit_small_patch14_dinov2.lvd142m --pretrained "
        "dinov2-s.safetensors --modality rgb --probes linear,knn",
    )
    probe.add_argument(
        "target",
        help="exported encoder (directory or encoder.json), run "
        "directory, or registered backbone name",
    )
    probe.add_argument(
        "--data",
        help="dataset name (e.g. scenes) or dataset file (NYU .mat); "
        "default: the data of the run holding the target",
    )
    probe.add_argument(
        "--probes",
        type=lambda text: [p for p in text.split(",") if p],
        help="comma-separated probes (default: the config's probe.probes)",
    )
    probe.add_argument("--out", help="output directory (default: runs/probe-TARGET)")
    probe.add_argument(
        "--pipeline",
        help="pipeline whose config sets data and probe options "
        "(default: the target's run, else scenes)",
    )
    probe.add_argument("--config", help="YAML file overriding that config")
    add_overrides(
        probe,
        "override one config key, e.g. --set probe.knn.k=10 (repeatable)",
    )
    probe.add_argument(
        "--modality",
        help="input modality of a backbone-name target (default: the config's teacher modality)",
    )
    probe.add_argument(
        "--pretrained",
        help="weights of a backbone-name target: imagenet (the default for "
        "torchvision nets) or a .pth file; a timm weights file or folder, an "
        "open_clip tag or checkpoint, a Hugging Face model folder "
        "(docs/teachers.md)",
    )
    probe.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of a backbone-name target, e.g. --option model=resnet50 (repeatable)",
    )
    report = add_command(
        sub,
        "report",
        "rebuild a run's report.md, or compare several runs",
        "xmodal report runs/scenes",
        "xmodal report runs/scenes runs/scenes-tau0.1 --out comparison.md",
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    report.add_argument("--out", help="with several runs: also write the comparison as Markdown")
    add_data_parser(sub, _Parser, add_command)
    lst = add_command(
        sub,
        "list",
        "list registered components and their packages",
        "xmodal list",
        "xmodal list backbones",
    )
    lst.add_argument(
        "kind",
        nargs="?",
        choices=LIST_KINDS,
        help="one registry, with a description of each entry (default: every name of all)",
    )
    check = add_command(
        sub,
        "check",
        "run the contract checks on a plugin package's components, or on one component",
        "xmodal check xmodal-imu",
        "xmodal check frontends:imu",
    )
    check.add_argument(
        "target", metavar="PACKAGE_OR_NAME", help="installed package, KIND:NAME or component name"
    )
    return parser


def _list(kind: str | None, console: Console, err: Console) -> int:
    """Print every kind's names and packages, or one kind's entries with descriptions.

    The names and packages come from entry points (nothing imported); a description needs the
    entry's docstring, so one kind's listing imports its entries' modules. An entry that fails
    to load (its import, its contract) gets its reason in its row, the rest are listed, and a
    last line names the broken entries: exit status 1.
    """
    broken: list[str] = []
    for name in [kind] if kind else LIST_KINDS:
        registry = REGISTRIES[name]
        table = Table(title=name, title_justify="left", show_header=False)
        table.add_column("name", no_wrap=True)
        if kind:
            table.add_column("description", overflow="fold")
        table.add_column("package", no_wrap=True, style="dim")
        for entry in registry.names():
            described = []
            if kind:
                try:
                    described = [registry.describe(entry)]
                except XmodalError as exc:  # one broken plugin must not hide the others
                    reason = str(exc).removeprefix(f"{name}: ")
                    described = [f"BROKEN: {' '.join(reason.split())}"]
                    broken.append(f"{name}:{entry} (package '{registry.package(entry) or '?'}')")
            table.add_row(entry, *described, registry.package(entry))
        console.print(table, markup=False, highlight=False)
    if not kind:
        console.print("descriptions: xmodal list KIND", markup=False, highlight=False)
    if broken:
        err.print(
            f"error: {len(broken)} {'entry' if len(broken) == 1 else 'entries'} failed to load: "
            f"{', '.join(broken)}; fix or uninstall the package (its row says why; "
            f"'xmodal check {broken[0].partition(' ')[0]}' runs its checks)",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return 1
    return 0


def _report(runs: list[str], out: str | None, console: Console) -> None:
    from xmodal.core.lock import RunLock
    from xmodal.evaluation.report import compare_runs, markdown_table, write_report

    if len(runs) == 1:  # writes into the run directory: held as `xmodal run` holds it
        with RunLock(runs[0]) if Path(runs[0]).is_dir() else nullcontext():
            console.print(f"report: {write_report(runs[0])}")
        return
    columns, rows = compare_runs(list[str | Path](runs))
    table = Table(title=f"{len(runs)} runs side by side (test metrics, % unless a rank)")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 4 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if out:
        write_text_atomic(
            out,
            f"# {len(runs)} runs side by side\n\n"
            + markdown_table(columns, rows, text_columns=4)
            + "\n",
        )
        console.print(f"comparison: {out}")


def _one_line_warnings(err: Console) -> Callable[..., None]:
    """``warnings.showwarning`` that prints a deprecation as one ``warning:`` line."""
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DeprecatedSpelling):
            err.print(f"warning: {message}", soft_wrap=True, highlight=False, markup=False)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``xmodal`` command; the exit status (2: a user mistake, printed as one line)."""
    console = Console()
    err = Console(stderr=True)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(err)
        return _main(argv, console, err)


def _main(argv: Sequence[str] | None, console: Console, err: Console) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        if args.command == "run":
            from xmodal.cli.launch import check_launch_arguments, launch, wants_launch
            from xmodal.pipelines.name_checks import check_names_early

            check_launch_arguments(args)
            check_names_early(args.pipeline, args.config, args.overrides)  # before torch loads
        if args.command == "run" and wants_launch(args):
            from xmodal.pipelines import resolve_config
            from xmodal.pipelines.dry_run import dry_run

            # a typo or a crashing component fails here, once, before N processes start
            spec, config = resolve_config(args.pipeline, args.config, args.overrides, args.data)
            dry_run(config, spec.stages, Path(args.out or Path("runs") / spec.name))
            return launch(args, argv)
        if args.command == "run":
            from xmodal.pipelines import run_pipeline

            run_pipeline(
                args.pipeline,
                out=args.out,
                config_file=args.config,
                overrides=args.overrides,
                console=console,
                data_path=args.data,
            )
        elif args.command == "probe":
            from xmodal.pipelines.probe_target import probe_target

            probe_target(
                args.target,
                out=args.out,
                data=args.data,
                probes=args.probes,
                pipeline=args.pipeline,
                config_file=args.config,
                overrides=args.overrides,
                modality=args.modality,
                pretrained=args.pretrained,
                options=args.options,
                console=console,
            )
        elif args.command == "report":
            _report(args.runs, args.out, console)
        elif args.command == "data":
            return run_data_command(args, console)
        elif args.command == "list":
            return _list(args.kind, console, err)
        elif args.command == "check":
            from xmodal.testing.command import check_command

            return check_command(args.target, console)
        else:
            build_parser().print_help()
            return 2
    except XmodalError as exc:
        rank = os.environ.get("RANK", "0")  # one line per process of a launched job
        err.print(
            f"{'' if rank == '0' else f'[rank {rank}] '}error: {exc}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return 2
    except OSError as exc:  # a writer outside xmodal.core.cache: full disk, read-only, ...
        error = output_error(exc, Path(exc.filename or "."))
        if not isinstance(error, OutputError):
            raise
        err.print(f"error: {error}", soft_wrap=True, highlight=False, markup=False)
        return 2
    except Exception as exc:  # noqa: BLE001  (re-raised unless a launched peer is gone)
        from xmodal.cli.launch import stop_after_lost_peer  # imports torch: only on failure

        status = stop_after_lost_peer(exc)  # its traceback to the job's log, not the terminal
        if status is None:
            raise
        return status
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
