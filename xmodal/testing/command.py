"""``xmodal check PACKAGE_OR_NAME``: the contract checks of a package's components, as a table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xmodal.testing.run import CheckResult, resolve, run_checks

STYLES = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


def check_command(target: str, console: Console) -> int:
    """Run every check on the components ``target`` names and print one row per check.

    Args:
        target: an installed package (``xmodal-imu``; ``xmodal`` for the built-ins),
            ``KIND:NAME`` (``frontends:imu``) or a name registered in one kind only.
        console: where the table goes.

    Returns:
        0 when every check passed (or was skipped), 1 when one failed.

    Raises:
        XmodalError: an unknown target, or a name of several kinds.
    """
    found = resolve(target)
    results: list[CheckResult] = []
    with console.status("") as status:
        for kind, name in found:
            status.update(f"checking {kind}:{escape(name)}")
            results += run_checks(kind, name)
    table = Table(title=f"xmodal check {escape(target)}", title_justify="left")
    for column in ("component", "kind", "package", "check", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for r in results:
        status_text = f"[{STYLES[r.status]}]{r.status}[/]"
        table.add_row(
            escape(r.name), r.kind, escape(r.package), r.check, status_text, escape(r.reason)
        )
    console.print(table)
    failed = [r for r in results if not r.ok]
    components = len(found)
    if failed:
        names = sorted({f"{r.kind}:{r.name}" for r in failed})
        console.print(
            f"[bold red]{len(failed)} of {len(results)} checks failed[/] "
            f"({', '.join(escape(n) for n in names)})"
        )
        return 1
    console.print(
        f"[green]all {len(results)} checks of {components} component"
        f"{'s' if components != 1 else ''} passed[/]"
    )
    return 0
