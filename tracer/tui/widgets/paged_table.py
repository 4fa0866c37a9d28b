"""A DataTable that adds its rows a page at a time, as the cursor or the scrollbar gets near."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist


@dataclass(frozen=True, slots=True)
class Row:
    """One row to show: a unique key, its cells (literal Text, never markup) and its height."""

    key: str
    cells: Sequence[Text]
    height: int = 1


class PagedTable(DataTable[Text]):
    """Rows are handed over all at once but only added to the table as they come into reach.

    A DataTable measures every cell it holds (10,000 rows take about a second to show), so a
    table of a thousand runs or a step of thousands of calls starts with one page and grows.
    """

    PAGE = 64

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._all: list[Row] = []
        self._where: dict[str, int] = {}
        self._loaded = 0

    @property
    def total_rows(self) -> int:
        """How many rows the table holds, loaded or not yet."""
        return len(self._all)

    @property
    def loaded_rows(self) -> int:
        """How many rows have been added to the underlying DataTable."""
        return self._loaded

    def set_columns(self, titles: Sequence[tuple[str, str]]) -> None:
        """Replace the columns (``(key, title)`` pairs); rows are dropped."""
        self.clear(columns=True)
        self._all, self._where, self._loaded = [], {}, 0
        for key, title in titles:
            self.add_column(Text(title), key=key)

    def show(self, rows: Sequence[Row], keep: str | None = None) -> None:
        """Replace the rows, leaving the cursor on the row keyed ``keep`` when it is still there."""
        self.clear()
        self._all = list(rows)
        self._where = {row.key: i for i, row in enumerate(self._all)}
        self._loaded = 0
        target = self._where.get(keep, 0) if keep is not None else 0
        self._load_until(max(self.PAGE, target + self.PAGE // 2))
        if self._all:
            self.move_cursor(row=target, animate=False, scroll=True)

    def row_at_cursor(self) -> Row | None:
        """The row under the cursor, if any."""
        if not self._all or self.cursor_row >= self._loaded:
            return None
        return self._all[self.cursor_row]

    def go_to(self, key: str) -> bool:
        """Move the cursor to a row by key, loading pages up to it; False when absent."""
        index = self._where.get(key)
        if index is None:
            return False
        self._load_until(index + self.PAGE // 2)
        self.move_cursor(row=index, animate=False, scroll=True)
        return True

    def update_row(self, row: Row) -> None:
        """Redraw one row's cells in place (when it is loaded)."""
        index = self._where.get(row.key)
        if index is None:
            return
        self._all[index] = row
        if index >= self._loaded:
            return
        try:
            for column, cell in zip(self.ordered_columns, row.cells, strict=False):
                self.update_cell(row.key, column.key, cell)
        except RowDoesNotExist:
            pass

    def set_cell(self, key: str, column: str, cell: Text) -> None:
        """Replace one cell of a row by key (loaded or not yet): the row keeps it when shown."""
        index = self._where.get(key)
        keys = [str(c.key.value) for c in self.ordered_columns]
        if index is None or column not in keys:
            return
        row = self._all[index]
        cells = list(row.cells)
        cells[keys.index(column)] = cell
        self._all[index] = Row(row.key, cells, row.height)
        if index < self._loaded:
            with suppress(RowDoesNotExist):
                self.update_cell(key, column, cell)

    def visible_keys(self) -> list[str]:
        """The keys of the loaded rows in view now (the first page before the table has a size)."""
        top = int(self.scroll_y)
        bottom = top + (self.size.height - 1 if self.size.height else self.PAGE)  # less the heading
        keys, line = [], 0
        for row in self._all[: self._loaded]:
            if line >= bottom:
                break
            if line + row.height > top:
                keys.append(row.key)
            line += row.height
        return keys

    def _load_until(self, count: int) -> None:
        count = min(count, len(self._all))
        for row in self._all[self._loaded : count]:
            self.add_row(*row.cells, key=row.key, height=row.height)
        self._loaded = max(self._loaded, count)

    def on_idle(self, event: events.Idle) -> None:
        """Redraw every row once DataTable has measured the rows just added.

        DataTable widens its columns for new rows in its own idle handler (which runs right
        after this one) but keeps the rows it drew before that in its render caches, at the old
        widths: without this, rows drawn between ``add_row`` and that idle handler stay
        truncated (``Embe`` for ``Embedding``) until something else redraws them.
        """
        if self._require_update_dimensions:
            self.call_later(self._redraw)

    def _redraw(self) -> None:
        self._clear_caches()
        self.refresh()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Near the end of what is loaded, load the next page."""
        if event.cursor_row >= self._loaded - self.PAGE // 4:
            self._load_until(self._loaded + self.PAGE)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolling towards the bottom (mouse wheel, scrollbar) also loads the next page."""
        super().watch_scroll_y(old_value, new_value)
        if self._loaded < len(self._all) and new_value >= self.max_scroll_y - self.size.height:
            self._load_until(self._loaded + self.PAGE)
