"""One progress bar for long work (training epochs, large sampling runs), drawn with rich."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """Advance with a count and optional fields shown after the bar."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, status=status)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Bar]:
    """A bar on stderr; a no-op when ``enabled`` is False or stderr is not a terminal (a log file gets
    the callers' own summary lines, not a bar's redraws cut to an unknown width)."""
    if not enabled or not sys.stderr.isatty():
        yield Bar(None, None)
        return
    from rich.console import Console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task(description, total=total, status="")
        yield Bar(progress, task)
