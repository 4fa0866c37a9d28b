"""The shape flow of one step: one row per module or op call."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from tracer.records import CallRecord
from tracer.tui import findings
from tracer.tui import formatting as fmt
from tracer.tui.flow import FlowRow
from tracer.tui.widgets.paged_table import PagedTable, Row

COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "#"),
    ("layer", "layer"),
    ("kind", "kind"),
    ("in", "in"),
    ("out", "→ out"),
    ("dtype", "dtype"),
    ("device", "device"),
    ("mean", "mean"),
    ("std", "std"),
    ("min", "min"),
    ("max", "max"),
    ("flags", "flags"),
)


class FlowTable(PagedTable):
    """Calls in execution order; extra outputs (an LSTM's h and c) on a second line."""

    class CallHighlighted(Message):
        """The cursor moved onto a call."""

        def __init__(self, call: CallRecord) -> None:
            self.call = call
            super().__init__()

    class CallChosen(Message):
        """Enter (or a click) on a call: open its detail."""

        def __init__(self, call: CallRecord) -> None:
            self.call = call
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._calls: dict[str, CallRecord] = {}

    def on_mount(self) -> None:
        """Columns exist from the start so an empty step still shows its headings."""
        self.set_columns(COLUMNS)

    def show_flow(self, rows: Sequence[FlowRow], keep: str | None = None) -> None:
        """Show a step's rows, keeping the cursor on the call keyed ``keep`` when present."""
        self._calls = {row.key: row.call for row in rows}
        self.show([flow_row(row) for row in rows], keep=keep)

    def current_call(self) -> CallRecord | None:
        """The call under the cursor."""
        row = self.row_at_cursor()
        return self._calls.get(row.key) if row is not None else None

    def go_to_module(self, path: str) -> bool:
        """Put the cursor on the first call of a module (its ops count too)."""
        current = self.current_call()
        if current is not None and current.module == path:
            return True
        for key, call in self._calls.items():
            if call.module == path:
                return self.go_to(key)
        return False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Announce the call under the cursor (after loading the next page when near it)."""
        super().on_data_table_row_highlighted(event)
        event.stop()
        call = self._calls.get(str(event.row_key.value))
        if call is not None:
            self.post_message(self.CallHighlighted(call))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens the layer detail."""
        event.stop()
        call = self._calls.get(str(event.row_key.value))
        if call is not None:
            self.post_message(self.CallChosen(call))


def flow_row(row: FlowRow) -> Row:
    """Literal cells of a flow row (user-given names are never read as markup)."""
    op_style = "dim" if row.call.kind == "op" else ""
    out = Text(row.output)
    if row.extra_outputs:
        out.append("\n" + row.extra_outputs, style="dim")
    stats = row.stats
    cells = [
        Text(str(row.call.seq), style="dim"),
        Text(row.label, style=op_style),
        Text(row.kind, style="dim"),
        Text(row.inputs),
        out,
        Text(row.dtype),
        Text(row.device),
        *(Text(fmt.number(stats.get(s)), justify="right") for s in ("mean", "std", "min", "max")),
        flags_cell(row),
    ]
    height = 1 + (row.extra_outputs.count("\n") + 1 if row.extra_outputs else 0)
    return Row(row.key, cells, height=height)


def flags_cell(row: FlowRow) -> Text:
    """The flag glyphs (red), then the names of the rules whose findings hold on this row."""
    cell = Text()
    cell.append(row.flags, style="bold red")  # a span: the rule names keep their own colour
    if row.findings:
        if cell:
            cell.append(" ")
        cell.append_text(findings.marker(row.findings))
    return cell
