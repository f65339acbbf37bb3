"""Where the tool talks: messages and progress on stderr (stdout is for results), a rich progress bar
only when stderr is a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console

# Markup is off by default: messages carry paths, and a file named 'shot [final].png' must print as
# is (rich would swallow '[final]' and fail on '[/]'). Styled messages pass markup=True and escape
# what they interpolate.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def is_tty() -> bool:
    return sys.stderr.isatty()


class _Bar:
    """What work loops see: `update(advance, **fields)`; `fields` feed the bar's status text."""

    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    @property
    def shown(self) -> bool:
        """Whether a bar is on screen (one at a time: rich has one live display per console)."""
        return self._progress is not None

    def update(self, advance: int = 1, status: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {"status": status} if status is not None else {}
            self._progress.update(self._task, advance=advance, **kwargs)


@contextmanager
def progress(description: str, total: int | None, completed: int = 0, enabled: bool = True) -> Iterator[_Bar]:
    if not (enabled and is_tty()):
        yield _Bar(None, None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Speed(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=total, completed=completed, status="")
        yield _Bar(bar, task)
