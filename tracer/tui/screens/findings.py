"""The findings screen: what the checks found in one run; enter goes to the layer and step."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from tracer.tui import findings
from tracer.tui import formatting as fmt
from tracer.tui.data import describe_error
from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.paged_table import PagedTable, Row

if TYPE_CHECKING:
    from tracer.checks import CheckReport, Finding

COLUMNS: tuple[tuple[str, str], ...] = (
    ("severity", "severity"),
    ("rule", "rule"),
    ("layer", "layer"),
    ("tensor", "tensor"),
    ("steps", "steps"),
    ("message", "message"),
)


class FindingsScreen(TracerScreen):
    """A run's findings by step, then flow position; choosing one closes this screen and
    hands the finding to ``go_to`` (the run screen shows its first step, cursor on its call)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # a priority binding: the table's own enter would hide it from the footer
        Binding("enter", "go", "go to step and layer", priority=True),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, run_id: int, go_to: Callable[[Finding], object]) -> None:
        super().__init__()
        self.run_id = run_id
        self.go_to = go_to
        self.check_report: CheckReport | None = None

    def compose(self) -> ComposeResult:
        """Title, notes of what could not be checked, the findings, key bar."""
        yield Static(Text(f" findings · run {self.run_id}  checking…"), id="title")
        yield Static(id="subtitle")
        table = PagedTable(id="findings")
        table.border_title = "findings"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        """Check the run in a worker (at once when the runs list already did)."""
        table = self.query_one(PagedTable)
        table.set_columns(COLUMNS)
        table.focus()
        run_id = self.run_id
        self.fetch(lambda: self.check(self.data.run(run_id)), self._checked)

    def _checked(self, report: CheckReport) -> None:
        self.check_report = report
        rows = [Row(str(i), findings.cells(f)) for i, f in enumerate(report.findings)]
        self.query_one(PagedTable).show(rows)
        self.query_one("#title", Static).update(self._title(report))
        self.query_one("#subtitle", Static).update(self._subtitle(report))

    def _title(self, report: CheckReport) -> Text:
        run = report.run
        title = Text(" findings", style="bold")
        title.append(f" · run {run.id} ")
        title.append(fmt.cell(run.name, fmt.TITLE_LIMIT), style="bold")
        title.append(f" · {len(report.steps)} steps checked · ")
        title.append_text(findings.summary_text(report.counts))
        return title

    def _subtitle(self, report: CheckReport) -> Text:
        rules = ", ".join(fmt.cell(name, 40) for name in report.rules) or "none"
        text = Text(f" rules: {rules}", style="dim")
        if not report.findings:
            text.append("   nothing found", style="green")
        for note in report.notes:
            text.append(f"\n {fmt.cell(note, 300)}", style="yellow")
        return text

    def report(self, exc: BaseException) -> None:
        """The check failed: say so in the title as well as in a notification."""
        super().report(exc)
        title = Text(f" findings · run {self.run_id} · ", style="bold")
        title.append(f"the check failed: {describe_error(exc)}", style="bold red")
        self.query_one("#title", Static).update(title)

    def chosen(self) -> Finding | None:
        """The finding under the cursor."""
        row = self.query_one(PagedTable).row_at_cursor()
        if row is None or self.check_report is None:
            return None
        return self.check_report.findings[int(row.key)]

    def action_go(self) -> None:
        """Close this list and go to the finding under the cursor."""
        finding = self.chosen()
        if finding is not None:
            self.app.pop_screen()
            self.go_to(finding)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click) on a finding goes to it."""
        event.stop()
        self.action_go()
