"""The runs screen: every run in the database, filtered, sorted, marked, live."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from tracer.records import RunInfo
from tracer.tui import findings, runlist
from tracer.tui import formatting as fmt
from tracer.tui.data import report_key
from tracer.tui.dialogs.confirm import ConfirmDialog
from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.run_table import RunTable

if TYPE_CHECKING:
    from tracer.checks import CheckReport, Finding


class RunsScreen(TracerScreen):
    """A table of runs that follows the database while training processes write to it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "open", show=False),
        Binding("space", "mark", "mark"),
        Binding("d", "diff", "diff marked"),
        Binding("m", "metrics", "metrics"),
        Binding("f", "findings", "findings"),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("S", "reverse", "reverse sort", show=False),
        Binding("delete,x", "delete", "delete"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.all_runs: list[RunInfo] = []
        self.marked: list[int] = []
        self.sort_column: runlist.Column | None = None
        self.sort_reverse = False
        self._seen: object = None
        self._next_poll = 0.0
        #: Runs waiting for their flags, the one being checked, and checks that failed.
        self._to_check: list[RunInfo] = []
        self._checking: RunInfo | None = None
        self._failed: set[tuple[object, ...]] = set()

    def compose(self) -> ComposeResult:
        """Title line, filter, table, key bar; rows arrive from a worker."""
        yield Static(Text(" layer-tracer  loading…"), id="title")
        yield Input(placeholder="filter (/): words in name, pipeline, status, config", id="filter")
        yield RunTable(id="runs")
        yield Footer()

    def on_mount(self) -> None:
        """First load now, then poll the database."""
        self.query_one(RunTable).focus()
        self.poll()
        self.set_interval(self.tracer_app.poll_interval, self.poll)

    def poll(self) -> None:
        """Ask the store for the runs: one poll at a time, only while this screen is shown,
        and never more than a tenth of the time (a database of thousands of runs takes a
        while to list)."""
        if self.app.screen is not self:
            return
        self.check_visible()  # the rows scrolled into view since the last poll
        if time.monotonic() < self._next_poll:
            return
        self.poll_store(self._timed_runs, self._got_runs)

    def _timed_runs(self) -> list[RunInfo]:
        start = time.monotonic()
        runs = self.data.runs()
        self._next_poll = time.monotonic() + 9 * (time.monotonic() - start)
        return runs

    def on_screen_resume(self) -> None:
        """Back from another screen: catch up at once."""
        self._next_poll = 0.0
        self.poll()

    def _got_runs(self, runs: list[RunInfo]) -> None:
        seen = runlist.fingerprint(runs)
        if seen == self._seen:
            return
        self._seen = seen
        self.all_runs = runs
        present = {run.id for run in runs}
        self.marked = [i for i in self.marked if i in present]
        self.redraw()

    def redraw(self) -> None:
        """Apply filter and sort to the known runs and show them."""
        query = self.query_one("#filter", Input).value
        shown = runlist.select(self.all_runs, query, self.sort_column, self.sort_reverse)
        self.query_one(RunTable).show_runs(shown, runlist.varying_keys(shown), self.marked)
        self._title(shown)
        self.call_after_refresh(self.check_visible)  # the rows first, then their checks

    def check_visible(self) -> None:
        """Queue the runs on screen whose flags are not known for their current size and
        status; check them one at a time in a worker, in the order they are listed."""
        table = self.query_one(RunTable)
        rules = self.tracer_app.rules
        queue = []
        for run in table.visible_runs():
            report = self.data.cached_report(run, rules)
            if report is not None:
                table.set_flags(run.id, findings.counts_text(report.counts))
            elif report_key(run, rules) in self._failed:
                table.set_flags(run.id, findings.counts_text(None))
            else:
                queue.append(run)
        self._to_check = queue
        self._check_next()

    def _check_next(self) -> None:
        if self._checking is not None or not self._to_check or self.app.screen is not self:
            return
        run = self._to_check.pop(0)
        self._checking = run
        self.fetch(lambda: self._check_quietly(run), self._checked)

    def _check_quietly(self, run: RunInfo) -> CheckReport | None:
        try:
            return self.check(run)
        except Exception:  # the flags cell says "?"; opening the findings tells why
            return None

    def _checked(self, report: CheckReport | None) -> None:
        run, self._checking = self._checking, None
        if run is None:
            return
        if report is None:
            self._failed.add(report_key(run, self.tracer_app.rules))
        flags = findings.counts_text(report.counts if report is not None else None)
        self.query_one(RunTable).set_flags(run.id, flags)
        self._check_next()

    def _title(self, shown: Sequence[RunInfo]) -> None:
        running = sum(run.status == "running" for run in self.all_runs)
        title = Text(" layer-tracer  ", style="bold")
        title.append(fmt.cell(self.data.location, fmt.TITLE_LIMIT))
        title.append(
            f"    {len(shown)} of {len(self.all_runs)} runs"
            if len(shown) != len(self.all_runs)
            else f"    {len(self.all_runs)} runs"
        )
        if running:
            title.append(f"  {running} running {runlist.LIVE_MARKER}", style="bold green")
        if self.sort_column is not None:
            arrow = "↓" if self.sort_reverse else "↑"
            title.append(f"    sorted by {self.sort_column.title} {arrow}", style="dim")
        self.query_one("#title", Static).update(title)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The cursor moved (maybe scrolling new runs into view): check those."""
        self.call_after_refresh(self.check_visible)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the user types."""
        self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter goes back to the table."""
        self.query_one(RunTable).focus()

    def on_run_table_run_chosen(self, event: RunTable.RunChosen) -> None:
        """Enter on a run opens it."""
        self._open(event.run_id)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a column heading sorts by it; clicking again reverses."""
        key = str(event.column_key.value)
        column = next((c for c in self._columns() if c.key == key), None)
        if column is None:
            return
        if self.sort_column is not None and self.sort_column.key == key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self.redraw()

    def _columns(self) -> list[runlist.Column]:
        return runlist.columns(self.query_one(RunTable).config_keys)

    def _open(self, run_id: int) -> None:
        from tracer.tui.screens.run import RunScreen

        self.app.push_screen(RunScreen(run_id))

    def action_open(self) -> None:
        """Open the run under the cursor."""
        run_id = self.query_one(RunTable).current_run_id()
        if run_id is not None:
            self._open(run_id)

    def action_mark(self) -> None:
        """Mark or unmark the run under the cursor (two marked runs can be diffed)."""
        table = self.query_one(RunTable)
        run_id = table.current_run_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        table.refresh_mark(run_id, run_id in self.marked)
        if table.cursor_row < table.total_rows - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_diff(self) -> None:
        """Diff the two marked runs (older on the left)."""
        if len(self.marked) != 2:
            self.notify(f"mark exactly two runs with space ({len(self.marked)} marked)")
            return
        from tracer.tui.screens.diff import DiffScreen

        left, right = sorted(self.marked)
        self.app.push_screen(DiffScreen(left, right))

    def action_metrics(self) -> None:
        """Metrics and provenance of the run under the cursor."""
        run_id = self.query_one(RunTable).current_run_id()
        if run_id is not None:
            from tracer.tui.screens.metrics import MetricsScreen

            self.app.push_screen(MetricsScreen(run_id))

    def action_findings(self) -> None:
        """What the checks found in the run under the cursor; enter goes to one."""
        run_id = self.query_one(RunTable).current_run_id()
        if run_id is None:
            return
        from tracer.tui.screens.findings import FindingsScreen

        def go_to(finding: Finding) -> None:
            from tracer.tui.screens.run import RunScreen

            self.app.push_screen(RunScreen(run_id, at=finding))

        self.app.push_screen(FindingsScreen(run_id, go_to))

    def action_filter(self) -> None:
        """Jump to the filter."""
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        """Empty the filter and return to the table."""
        self.query_one("#filter", Input).value = ""
        self.query_one(RunTable).focus()

    def action_sort(self) -> None:
        """Sort by the next column."""
        columns = self._columns()
        keys = [c.key for c in columns]
        current = keys.index(self.sort_column.key) if self.sort_column is not None else -1
        self.sort_column = columns[(current + 1) % len(columns)]
        self.redraw()

    def action_reverse(self) -> None:
        """Reverse the sort order."""
        self.sort_reverse = not self.sort_reverse
        if self.sort_column is None:
            self.sort_column = runlist.BASE_COLUMNS[0]
        self.redraw()

    def action_delete(self) -> None:
        """Delete the run under the cursor, after asking."""
        if self.tracer_app.read_only:
            self.notify("read-only: runs cannot be deleted here", severity="warning")
            return
        table = self.query_one(RunTable)
        run = table.runs.get(table.current_run_id() or -1)
        if run is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.fetch(lambda: self.data.delete(run.id), lambda _: self._deleted(run))

        question = f"Delete run {run.id} ({fmt.cell(run.name)}) and everything recorded for it?"
        self.app.push_screen(ConfirmDialog(question), answered)

    def _deleted(self, run: RunInfo) -> None:
        self.notify(f"deleted run {run.id} ({fmt.cell(run.name)})", markup=False)
        self.poll()
