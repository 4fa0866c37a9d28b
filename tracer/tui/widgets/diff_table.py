"""Two runs' flows side by side, aligned, changed cells highlighted, gaps for missing rows."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import JustifyMethod
from rich.text import Text

from tracer.tui.diffview import SIDE_FIELDS, DiffLine, Side
from tracer.tui.widgets.paged_table import PagedTable, Row

TITLES = {
    "layer": "layer",
    "flow": "in → out",
    "dtype": "type",
    "params": "params",
    "mean": "mean",
    "std": "std",
}
CHANGED = "bold black on yellow"
DRIFTED = "yellow"
GAP = "┄"
_MARK_STYLE = {"added": "bold green", "removed": "bold red"}


def columns(fields: Sequence[str] = SIDE_FIELDS) -> list[tuple[str, str]]:
    """Left side, the marker, right side."""
    left = [(f"a.{f}", TITLES[f]) for f in fields]
    right = [(f"b.{f}", TITLES[f]) for f in fields]
    return [*left, ("marker", "│"), *right]


class DiffTable(PagedTable):
    """Aligned rows of a diff; ``n`` / ``N`` in the screen jump between changed rows."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[DiffLine] = []
        self.fields: tuple[str, ...] = SIDE_FIELDS

    def on_mount(self) -> None:
        """The headings exist before the first diff arrives."""
        self.set_columns(columns())

    def show_lines(
        self, lines: Sequence[DiffLine], keep: str | None = None, dtype: bool = True
    ) -> None:
        """Show the lines, keeping the cursor on the same aligned row when possible; the
        dtype/device column only when asked (it costs width that the shapes need)."""
        fields = SIDE_FIELDS if dtype else tuple(f for f in SIDE_FIELDS if f != "dtype")
        if fields != self.fields:
            self.fields = fields
            self.set_columns(columns(fields))
        self.lines = list(lines)
        self.show([diff_row(line, fields) for line in self.lines], keep=keep)

    def current_line(self) -> DiffLine | None:
        """The aligned row under the cursor."""
        row = self.row_at_cursor()
        return self.lines[self.cursor_row] if row is not None else None

    def jump(self, forward: bool) -> bool:
        """Move to the next (or previous) changed row, wrapping around; False when none."""
        count = len(self.lines)
        if not count:
            return False
        start = self.cursor_row
        for step in range(1, count + 1):
            index = (start + step if forward else start - step) % count
            if self.lines[index].is_change:
                return self.go_to(self.lines[index].key)
        return False


def diff_row(line: DiffLine, fields: Sequence[str] = SIDE_FIELDS) -> Row:
    """Cells for one aligned row: highlighted where the two sides differ."""
    marker = Text(line.marker, style=_MARK_STYLE.get(line.status, "bold yellow"))
    left, right = side_cells(line.left, line, fields), side_cells(line.right, line, fields)
    return Row(line.key, [*left, marker, *right])


def side_cells(side: Side | None, line: DiffLine, fields: Sequence[str]) -> list[Text]:
    """One side's cells, or a gap when the call exists only on the other side."""
    if side is None:
        return [Text(GAP, style="dim") for _ in fields]
    cells = []
    for field in fields:
        style = ""
        if field in line.changed:
            style = CHANGED
        elif field in line.drifted:
            style = DRIFTED
        elif field == "layer" and line.is_change:
            style = "bold"
        justify: JustifyMethod = "right" if field in ("params", "mean", "std") else "left"
        cells.append(Text(side.cell(field), style=style, justify=justify))
    return cells
