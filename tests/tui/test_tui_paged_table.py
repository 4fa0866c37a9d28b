"""The paged table holds every row but adds them to the DataTable a page at a time."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import App, ComposeResult

from tracer.tui.widgets.paged_table import PagedTable, Row


class TableApp(App[None]):
    """Just one paged table of a thousand rows."""

    def compose(self) -> ComposeResult:
        yield PagedTable()

    def on_mount(self) -> None:
        table = self.query_one(PagedTable)
        table.set_columns([("n", "n"), ("square", "square")])
        table.show([Row(str(i), [Text(str(i)), Text(str(i * i))]) for i in range(1000)])
        table.focus()


def test_paged_table_loads_a_page_then_more_as_the_cursor_nears_the_end() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(PagedTable)
            assert (table.total_rows, table.loaded_rows) == (1000, PagedTable.PAGE)
            assert table.row_count == PagedTable.PAGE
            await pilot.press(*["pagedown"] * 4)
            assert PagedTable.PAGE < table.loaded_rows < 1000
            assert table.go_to("900")
            assert table.row_at_cursor().key == "900"
            assert 900 < table.loaded_rows <= 1000
            assert not table.go_to("no such row")

    asyncio.run(scenario())


def test_paged_table_keeps_the_cursor_on_the_same_key_across_updates() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(PagedTable)
            table.go_to("500")
            rows = [Row(str(i), [Text(str(i)), Text("-")]) for i in range(1000, -1, -1)]
            table.show(rows, keep="500")
            await pilot.pause()
            assert table.row_at_cursor().key == "500"
            assert table.loaded_rows < 1000

    asyncio.run(scenario())
