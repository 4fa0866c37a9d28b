"""What a person sees on each screen, as SVG snapshots (review them by eye when they change).

Update after an intended change with ``pytest tests/tui/test_tui_snapshots.py --snapshot-update``.
Times, host, pid and versions of the seeded runs are frozen (see ``tui_seed.frozen_provenance``).
"""

from __future__ import annotations

from textual.pilot import Pilot
from tui_pilot import wait_for

from tracer.tui.screens.diff import DiffScreen
from tracer.tui.screens.findings import FindingsScreen
from tracer.tui.screens.metrics import MetricsScreen
from tracer.tui.screens.run import RunScreen
from tracer.tui.widgets.diff_table import DiffTable
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.run_table import RunTable

WIDE = (160, 48)
NARROW = (80, 24)


async def runs_listed(pilot: Pilot[None]) -> None:
    """Wait for the runs table's first poll and the checks of every listed run."""
    await wait_for(pilot, lambda: pilot.app.screen.query(RunTable).first().row_count == 4)
    await wait_for(pilot, lambda: len(pilot.app.screen.query(RunTable).first().flags) == 4)


def opened(run_id: int):
    """A run_before hook: open a run and wait for its flow."""

    async def hook(pilot: Pilot[None]) -> None:
        await runs_listed(pilot)
        screen = RunScreen(run_id)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.query_one(FlowTable).row_count > 0)
        await wait_for(pilot, lambda: screen.check_report is not None)
        await pilot.pause(0.1)

    return hook


def diff_opened(run_a: int, run_b: int):
    """A run_before hook: open the diff of two runs and wait for its aligned rows."""

    async def hook(pilot: Pilot[None]) -> None:
        await runs_listed(pilot)
        await pilot.app.push_screen(DiffScreen(run_a, run_b))
        await wait_for(pilot, lambda: pilot.app.screen.query_one(DiffTable).row_count == 8)

    return hook


def test_snapshot_runs_screen(seeded, make_app, snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=runs_listed)


def test_snapshot_runs_screen_narrow(seeded, make_app, snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=NARROW, run_before=runs_listed)


def test_snapshot_run_screen_on_the_lstm(seeded, make_app, snap_compare) -> None:
    hook = opened(seeded.baseline)
    assert snap_compare(make_app(), press=["down", "down"], terminal_size=WIDE, run_before=hook)


def test_snapshot_run_screen_with_dimension_names(seeded, make_app, snap_compare) -> None:
    hook = opened(seeded.baseline)
    assert snap_compare(make_app(), press=["n", "down"], terminal_size=WIDE, run_before=hook)


def test_snapshot_run_screen_narrow(seeded, make_app, snap_compare) -> None:
    hook = opened(seeded.baseline)
    assert snap_compare(make_app(), terminal_size=NARROW, run_before=hook)


def test_snapshot_layer_screen(seeded, make_app, snap_compare) -> None:
    hook = opened(seeded.baseline)
    keys = ["down", "down", "enter", "down", "_", "_"]
    assert snap_compare(make_app(), press=keys, terminal_size=WIDE, run_before=hook)


def test_snapshot_diff_screen(seeded, make_app, snap_compare) -> None:
    hook = diff_opened(seeded.baseline, seeded.small)
    assert snap_compare(make_app(), press=["n"], terminal_size=WIDE, run_before=hook)


def test_snapshot_diff_screen_changes_only(seeded, make_app, snap_compare) -> None:
    hook = diff_opened(seeded.baseline, seeded.small)
    assert snap_compare(make_app(), press=["c"], terminal_size=WIDE, run_before=hook)


def test_snapshot_metrics_screen(seeded, make_app, snap_compare) -> None:
    async def hook(pilot: Pilot[None]) -> None:
        await runs_listed(pilot)
        screen = MetricsScreen(seeded.baseline)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.curves is not None)

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=hook)


def test_snapshot_help_screen(seeded, make_app, snap_compare) -> None:
    assert snap_compare(
        make_app(), press=["question_mark"], terminal_size=WIDE, run_before=runs_listed
    )


def test_snapshot_delete_confirmation(seeded, make_app, snap_compare) -> None:
    assert snap_compare(make_app(), press=["x"], terminal_size=WIDE, run_before=runs_listed)


async def flagged_listed(pilot: Pilot[None]) -> None:
    """Wait for the flagged database's two runs and their checks."""
    await wait_for(pilot, lambda: len(pilot.app.screen.query(RunTable).first().flags) == 2)


def test_snapshot_runs_screen_with_flags(flagged, flagged_app, snap_compare) -> None:
    # the cursor on the healthy run, so that the flagged run's 1E shows in its colour
    hook = flagged_listed
    assert snap_compare(flagged_app(), press=["down"], terminal_size=WIDE, run_before=hook)


def test_snapshot_run_screen_at_a_finding(flagged, flagged_app, snap_compare) -> None:
    async def hook(pilot: Pilot[None]) -> None:
        await flagged_listed(pilot)
        await pilot.press("f")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "check_report", None) is not None)
        await pilot.press("enter")  # the run screen at the NaN's first step, on the log row
        flow = pilot.app.screen.query_one(FlowTable)
        await wait_for(pilot, lambda: getattr(flow.current_call(), "module", None) == "log")
        await pilot.pause(0.1)

    assert snap_compare(flagged_app(), terminal_size=WIDE, run_before=hook)


def test_snapshot_findings_screen(flagged, flagged_app, snap_compare) -> None:
    async def hook(pilot: Pilot[None]) -> None:
        await flagged_listed(pilot)
        screen = FindingsScreen(flagged.nan, lambda finding: None)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.check_report is not None)

    assert snap_compare(flagged_app(), terminal_size=WIDE, run_before=hook)
