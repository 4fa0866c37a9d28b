"""The runs screen on a real store: listing, literal names, filter, sort, marks, delete, live."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, Static
from tui_pilot import drive, wait_for

from tracer.tui.app import TracerApp
from tracer.tui.dialogs.confirm import ConfirmDialog
from tracer.tui.screens.diff import DiffScreen
from tracer.tui.screens.run import RunScreen
from tracer.tui.screens.runs import RunsScreen
from tracer.tui.widgets.run_table import RunTable


def table(pilot: Pilot[None]) -> RunTable:
    """The runs table of the screen on top."""
    return pilot.app.screen.query_one(RunTable)


def listed(pilot: Pilot[None]) -> list[int]:
    """Run ids in display order."""
    return [int(str(key.value)) for key in table(pilot).rows]


def cell(pilot: Pilot[None], run_id: int, column: str) -> str:
    """The plain text of one cell."""
    return str(table(pilot).get_cell(str(run_id), column))


async def loaded(pilot: Pilot[None], count: int = 4) -> None:
    """Wait until the first poll filled the table."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
    await wait_for(pilot, lambda: len(listed(pilot)) == count)


def test_runs_screen_lists_runs_newest_first_with_varying_config(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        assert listed(pilot) == [seeded.live, seeded.tricky, seeded.small, seeded.baseline]
        assert "hidden_dim" in [str(c.label) for c in table(pilot).columns.values()]
        assert "batch_size" not in [str(c.label) for c in table(pilot).columns.values()]
        assert cell(pilot, seeded.small, "config.hidden_dim") == "256"
        assert cell(pilot, seeded.live, "status") == "running ●"
        assert cell(pilot, seeded.tricky, "status") == "failed"
        assert cell(pilot, seeded.baseline, "steps") == "3"
        title = str(pilot.app.screen.query_one("#title", Static).render())
        assert "4 runs" in title and "1 running" in title

    drive(make_app(), script)


def test_runs_screen_shows_user_strings_literally(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        assert cell(pilot, seeded.tricky, "name") == "[bold]x[/]"

    drive(make_app(), script)


def test_runs_screen_filters_as_the_user_types(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"small")
        assert listed(pilot) == [seeded.small]
        await pilot.press("escape")
        assert len(listed(pilot)) == 4
        assert pilot.app.screen.query_one("#filter", Input).value == ""

    drive(make_app(), script)


def test_runs_screen_sorts_by_column_and_reverses(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("s")  # first sort column: id, ascending
        assert listed(pilot) == sorted(listed(pilot))
        await pilot.press("S")
        assert listed(pilot) == sorted(listed(pilot), reverse=True)

    drive(make_app(), script)


def test_runs_screen_diffs_two_marked_runs(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("d")  # nothing marked: a notification, no diff
        assert isinstance(pilot.app.screen, RunsScreen)
        table(pilot).go_to(str(seeded.small))
        await pilot.press("space", "space")  # marks small, then the row below it (baseline)
        assert pilot.app.screen.marked == [seeded.small, seeded.baseline]
        assert cell(pilot, seeded.small, "mark") == "●"
        await pilot.press("d")
        screen = pilot.app.screen
        assert isinstance(screen, DiffScreen)
        assert (screen.run_a, screen.run_b) == (seeded.baseline, seeded.small)

    drive(make_app(), script)


def test_runs_screen_deletes_only_after_confirmation(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        table(pilot).go_to(str(seeded.tricky))
        await pilot.press("x")
        assert isinstance(pilot.app.screen, ConfirmDialog)
        await pilot.press("n")
        assert seeded.tricky in listed(pilot)
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: seeded.tricky not in listed(pilot))
        assert seeded.tricky not in [run.id for run in seeded.store.list_runs()]

    drive(make_app(), script)


def test_runs_screen_refuses_to_delete_a_run_still_being_written(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        table(pilot).go_to(str(seeded.live))
        await pilot.press("x")
        await pilot.press("y")
        notes = pilot.app._notifications
        await wait_for(pilot, lambda: any("still being written" in str(n.message) for n in notes))
        assert seeded.live in listed(pilot)
        assert seeded.live in [run.id for run in seeded.store.list_runs()]

    drive(make_app(), script)


WRITER = """
import sys
from tui_seed import seed_run, sentiment_calls
from tracer.store import open_store

store = open_store(sys.argv[1])
store.writer(int(sys.argv[2])).write_step(10, sentiment_calls(10, 512))
seed_run(store, "arrived later", hidden=64, steps=1)
store.close()
"""


def test_runs_screen_follows_a_writer_process(seeded, make_app: Callable[[], TracerApp]) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        args = [sys.executable, "-c", WRITER, str(seeded.path), str(seeded.live)]
        writer = subprocess.Popen(args, env=env)  # writes while the app keeps polling
        while writer.poll() is None:
            await pilot.pause(0.05)
        assert writer.returncode == 0
        await wait_for(pilot, lambda: cell(pilot, seeded.live, "steps") == "2")
        await wait_for(pilot, lambda: len(listed(pilot)) == 5)
        new = listed(pilot)[0]
        assert cell(pilot, new, "name") == "arrived later"
        assert cell(pilot, new, "config.hidden_dim") == "64"

    drive(make_app(), script)


def test_runs_screen_responds_to_the_mouse(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.click(RunTable, offset=(6, 0))  # the "id" heading: sort by id
        assert listed(pilot) == sorted(listed(pilot))
        row = listed(pilot).index(seeded.small) + 1  # below the heading
        await pilot.click(RunTable, offset=(10, row))
        await pilot.click(RunTable, offset=(10, row))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert pilot.app.screen.run_id == seeded.small

    drive(make_app(), script)
