"""Rich progress bars that only the main process draws (other ranks get a silent stand-in).

In a narrow terminal the bar drops whole columns (time remaining, then time elapsed, then the
bar itself) rather than letting rich cut numbers such as ``270/2400`` or ``0:01:12`` short.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

#: narrowest useful bar, in characters
MIN_BAR = 10


class _Silent:
    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        return TaskID(0)

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass


class FittingProgress(Progress):
    """A ``Progress`` that drops columns until the rest fit the console's width.

    The columns of ``drop_order`` go first listed, first dropped; the bar counts as
    ``MIN_BAR`` characters.
    """

    def __init__(self, *columns: Any, drop_order: tuple[Any, ...] = (), **kwargs: Any) -> None:
        self.drop_order = drop_order
        super().__init__(*columns, **kwargs)

    def make_tasks_table(self, tasks: Any) -> Table:
        """Rich's table of the tasks, with the columns that fit."""
        if not hasattr(self, "live"):  # rich's first render, inside __init__: no console yet
            return super().make_tasks_table(tasks)
        every = self.columns
        self.columns = tuple(self._fitting(tasks))
        try:
            return super().make_tasks_table(tasks)
        finally:
            self.columns = every

    def _fitting(self, tasks: Any) -> list[Any]:
        visible = [t for t in tasks if t.visible]
        kept = list(self.columns)
        widths = {
            id(c): MIN_BAR if isinstance(c, BarColumn) else self._width(c, visible) for c in kept
        }
        for column in self.drop_order:
            if sum(widths[id(c)] for c in kept) + len(kept) - 1 <= self.console.width:
                break
            kept.remove(column)
        return kept

    def _width(self, column: Any, tasks: list[Task]) -> int:
        widest = 0
        for task in tasks:
            renderable = column.format(task=task) if isinstance(column, str) else column(task)
            widest = max(
                widest, Measurement.get(self.console, self.console.options, renderable).maximum
            )
        return widest


def make_progress(console: Console | None = None) -> FittingProgress:
    """Description, bar, done/total, info, elapsed, remaining.

    In a narrow terminal remaining, elapsed, the bar and the info go, in that order.
    """
    description, bar = TextColumn("[bold]{task.description}"), BarColumn(bar_width=None)
    counts, info = MofNCompleteColumn(), TextColumn("{task.fields[info]}")
    elapsed, remaining = TimeElapsedColumn(), TimeRemainingColumn()
    return FittingProgress(
        description,
        bar,
        counts,
        info,
        elapsed,
        remaining,
        drop_order=(remaining, elapsed, bar, info),
        console=console,
        transient=False,
    )


@contextmanager
def progress_bar(enabled: bool, console: Console | None = None) -> Iterator[Progress | _Silent]:
    """A rich progress display when ``enabled`` (main process), else a no-op object."""
    if not enabled:
        yield _Silent()
        return
    with make_progress(console) as bar:
        yield bar
