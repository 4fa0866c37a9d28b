"""The runs table: one row per run, marks for diffing, live status, what the checks found."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from tracer.records import RunInfo
from tracer.tui import runlist
from tracer.tui.widgets.paged_table import PagedTable, Row

MARK = "●"
#: The flags column (errors and warnings the checks found) comes right after this one.
FLAGS_AFTER = "status"
_STATUS_STYLE = {
    "running": "bold green",
    "completed": "",
    "failed": "bold red",
    "interrupted": "yellow",
}


class RunTable(PagedTable):
    """Runs as rows, keyed by run id; the first column shows the marks."""

    class RunChosen(Message):
        """Enter (or a click) on a run."""

        def __init__(self, run_id: int) -> None:
            self.run_id = run_id
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: dict[int, RunInfo] = {}
        self.config_keys: list[str] = []
        self.flags: dict[int, Text] = {}

    def show_runs(
        self, runs: Sequence[RunInfo], config_keys: Sequence[str], marked: Collection[int]
    ) -> None:
        """Show the runs, keeping the cursor on the same run when it is still listed."""
        current = self.current_run_id()
        if list(config_keys) != self.config_keys or not self.columns:
            self.config_keys = list(config_keys)
            titles = [(c.key, c.title) for c in runlist.columns(config_keys)]
            titles.insert(_flags_index(), ("flags", "flags"))
            self.set_columns([("mark", " "), *titles])
        self.runs = {run.id: run for run in runs}
        rows = [self._row(run, run.id in marked) for run in runs]
        self.show(rows, keep=str(current) if current is not None else None)

    def refresh_mark(self, run_id: int, marked: bool) -> None:
        """Redraw one run's row after it was marked or unmarked."""
        run = self.runs.get(run_id)
        if run is not None:
            self.update_row(self._row(run, marked))

    def set_flags(self, run_id: int, flags: Text) -> None:
        """Show what the checks found in a run (kept when the run is shown again)."""
        self.flags[run_id] = flags
        self.set_cell(str(run_id), "flags", flags)

    def visible_runs(self) -> list[RunInfo]:
        """The runs in the rows on screen now."""
        return [self.runs[int(key)] for key in self.visible_keys() if int(key) in self.runs]

    def current_run_id(self) -> int | None:
        """The id of the run under the cursor."""
        row = self.row_at_cursor()
        return int(row.key) if row is not None else None

    def _row(self, run: RunInfo, marked: bool) -> Row:
        texts = [Text(cell) for cell in runlist.cells(run, self.config_keys)]
        texts[3].stylize(_STATUS_STYLE.get(run.status, ""))
        for cell in texts[4:5] + texts[7:9]:
            cell.justify = "right"
        texts.insert(_flags_index(), self.flags.get(run.id, Text()))
        mark = Text(MARK if marked else " ", style="bold magenta")
        return Row(str(run.id), [mark, *texts])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens the run."""
        event.stop()
        self.post_message(self.RunChosen(int(str(event.row_key.value))))


def _flags_index() -> int:
    return [c.key for c in runlist.BASE_COLUMNS].index(FLAGS_AFTER) + 1
