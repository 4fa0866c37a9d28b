"""A rich progress bar that a pipeline reports to through ``ctx.progress``."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """One bar per phase (an epoch), with the latest metrics next to it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def start(self, description: str, total: int | None) -> None:
        """Begin a new bar (the previous one stays on screen, complete)."""
        self._task = self._bar.add_task(description, total=total, info="")

    def advance(self, n: int = 1) -> None:
        """Move the current bar forward."""
        if self._task is not None:
            self._bar.advance(self._task, n)

    def status(self, text: str) -> None:
        """Show ``text`` (the latest metrics) next to the current bar."""
        if self._task is not None:
            self._bar.update(self._task, info=text)

    def print(self, text: str) -> None:
        """Print a line above the bars."""
        self._bar.console.print(text)
