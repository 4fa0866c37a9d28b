"""The inspector's runs screen with a distributed job: its ranks listed together, by rank."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import DataTable

from tracer.store import open_store
from tracer.tui import runlist
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader


def test_runs_screen_lists_the_ranks_of_a_job_together(tmp_path: Path) -> None:
    store = open_store(tmp_path / "jobs.db")
    rank1 = store.create_run(name="job", rank=1, world_size=2, group_id="g")
    solo = store.create_run(name="solo")
    rank0 = store.create_run(name="job", rank=0, world_size=2, group_id="g")
    for run in (rank1, solo, rank0):
        store.finish_run(run.id, "completed")
    expected = [rank0.id, rank1.id, solo.id]  # the job where its newest run is, rank 0 first
    assert [r.id for r in runlist.select(store.list_runs(), "", None, False)] == expected

    async def scenario() -> list[str]:
        app = TracerApp(StoreReader(store, "jobs.db"), poll_interval=0.1)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.screen.query_one(DataTable)
            for _ in range(250):
                if table.row_count == 3:
                    break
                await pilot.pause(0.02)
            statuses = [str(table.get_cell(str(i), "status")) for i in expected]
            return [str(key.value) for key in table.rows] + statuses

    try:
        shown = asyncio.run(scenario())
    finally:
        store.close()
    assert shown == [*map(str, expected), "completed r0", "completed r1", "completed"]
