"""What `tracer check` finds, in the inspector: runs-list flags, flow markers, the findings
screen and its jump, the layer plots' mark; on runs traced with the real tracer."""

from __future__ import annotations

import io
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static
from tui_pilot import drive, wait_for
from tui_seed import NAN_STEP, sentiment_calls, sentiment_modules, tensor

from tracer.checks import Finding, Rule
from tracer.checks.builtin import BUILTIN_RULES, nan
from tracer.checks.view import RunRecords
from tracer.store import open_store
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader
from tracer.tui.screens.findings import FindingsScreen
from tracer.tui.screens.help import HelpScreen
from tracer.tui.screens.layer import LayerScreen
from tracer.tui.screens.run import RunScreen
from tracer.tui.screens.runs import RunsScreen
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.paged_table import PagedTable
from tracer.tui.widgets.run_table import RunTable
from tracer.tui.widgets.stat_plots import LABEL_WIDTH, TAIL_WIDTH, StatPlots


def rendered(widget: Static) -> str:
    """The plain text a Static's rich renderable (a table) draws."""
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def errors(pilot: Pilot[None]) -> list[str]:
    """Messages of the error notifications on screen."""
    return [n.message for n in pilot.app._notifications if n.severity == "error"]


def runs_table(pilot: Pilot[None]) -> RunTable:
    return pilot.app.screen.query_one(RunTable)


async def flags_of(pilot: Pilot[None], *run_ids: int) -> dict[int, Text]:
    """The runs list's flags cells, once every given run has been checked."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
    await wait_for(pilot, lambda: all(i in runs_table(pilot).flags for i in run_ids))
    table = runs_table(pilot)
    return {i: table.get_cell(str(i), "flags") for i in run_ids}


def flow_flags(pilot: Pilot[None]) -> dict[str, str]:
    """The flow's flags column by layer label."""
    table = pilot.app.screen.query_one(FlowTable)
    return {str(table.get_cell(r, "layer")): str(table.get_cell(r, "flags")) for r in table.rows}


async def open_run(pilot: Pilot[None], run_id: int) -> RunScreen:
    screen = RunScreen(run_id)
    await pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: screen.check_report is not None and screen.calls != [])
    return screen


async def step_to(pilot: Pilot[None], screen: RunScreen, step: int) -> None:
    while screen.step != step:
        await pilot.press("right_square_bracket" if screen.step < step else "left_square_bracket")
    await wait_for(pilot, lambda: screen.calls and screen.calls[0].step == step)
    await pilot.pause(0.05)


def test_runs_list_counts_errors_of_the_nan_run_and_nothing_for_the_healthy_one(
    flagged, flagged_app
) -> None:
    async def script(pilot: Pilot[None]) -> None:
        flags = await flags_of(pilot, flagged.nan, flagged.healthy)
        assert flags[flagged.nan].plain == "1E"
        assert flags[flagged.nan].spans[0].style == "bold red"
        assert flags[flagged.healthy].plain == ""
        headings = [str(c.label) for c in runs_table(pilot).columns.values()]
        assert headings.index("flags") == headings.index("status") + 1

    drive(flagged_app(), script)


def test_runs_list_shows_a_question_mark_when_the_check_cannot_read_the_run(
    flagged, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.db"
    shutil.copy(flagged.path, damaged)
    with sqlite3.connect(damaged) as db:  # the runs still list; their flows cannot be read
        db.execute("DROP TABLE extra_stats")
    store = open_store(damaged)

    async def script(pilot: Pilot[None]) -> None:
        flags = await flags_of(pilot, flagged.nan, flagged.healthy)
        assert {flags[flagged.nan].plain, flags[flagged.healthy].plain} == {"?"}
        await pilot.press("f")  # the findings screen says why, and nothing crashes
        await wait_for(pilot, lambda: any("extra_stats" in m for m in errors(pilot)))
        assert isinstance(pilot.app.screen, FindingsScreen)

    try:
        drive(TracerApp(StoreReader(store, "damaged.db"), poll_interval=0.1), script)  # built-ins
    finally:
        store.close()


def test_runs_list_checks_a_running_run_again_when_it_grows(tmp_path: Path) -> None:
    store = open_store(tmp_path / "tracer.db")
    run = store.create_run(name="live", pipeline="sentiment")
    writer = store.writer(run.id)
    writer.begin(sentiment_modules(64), [])
    writer.write_step(0, sentiment_calls(0, 64))

    async def script(pilot: Pilot[None]) -> None:
        assert (await flags_of(pilot, run.id))[run.id].plain == ""
        calls = sentiment_calls(10, 64)
        bad = tensor("0", (10000, 1), nan_count=5)  # sig makes NaN from finite inputs
        calls[5] = replace(calls[5], outputs=(bad,))
        writer.write_step(10, calls)
        await wait_for(pilot, lambda: runs_table(pilot).flags[run.id].plain == "1E")

    try:
        drive(TracerApp(StoreReader(store, "tracer.db"), poll_interval=0.1), script)
    finally:
        store.close()


def test_flow_marks_the_log_row_from_the_nan_step_not_before(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, flagged.nan)
        assert "⚑" not in "".join(flow_flags(pilot).values())  # step 0: all finite
        await step_to(pilot, screen, NAN_STEP - 1)
        assert "⚑" not in "".join(flow_flags(pilot).values())
        await step_to(pilot, screen, NAN_STEP)
        flags = flow_flags(pilot)
        assert flags["log"] == "✗ ⚑ nan"
        assert "⚑" not in flags["head"] + flags["lin"] + flags["<root>"]  # downstream, upstream
        await step_to(pilot, screen, NAN_STEP + 1)  # it lasts: still marked
        assert flow_flags(pilot)["log"] == "✗ ⚑ nan"
        title = str(screen.query_one("#title", Static).render())
        assert "findings 1E (f)" in title

    drive(flagged_app(), script)


def test_f_on_the_runs_list_lists_the_finding_and_enter_lands_on_log_at_its_step(
    flagged, flagged_app
) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await flags_of(pilot, flagged.nan)
        assert runs_table(pilot).current_run_id() == flagged.nan  # newest first
        await pilot.press("f")
        screen = pilot.app.screen
        assert isinstance(screen, FindingsScreen)
        await wait_for(pilot, lambda: screen.check_report is not None)
        table = screen.query_one(PagedTable)
        row = [str(table.get_cell("0", key)) for key in ("severity", "rule", "layer", "tensor")]
        assert row == ["error", "nan", "log", "output 0"]
        assert str(table.get_cell("0", "steps")) == f"{NAN_STEP}-{NAN_STEP + 1}"
        assert "log made 32 NaN" in str(table.get_cell("0", "message"))
        assert "1 error · 0 warnings · 0 info" in str(screen.query_one("#title", Static).render())

        await pilot.press("enter")
        run_screen = pilot.app.screen
        assert isinstance(run_screen, RunScreen)
        await wait_for(pilot, lambda: run_screen.calls != [])
        assert run_screen.step == NAN_STEP
        await wait_for(pilot, lambda: run_screen.query_one(FlowTable).current_call() is not None)
        call = run_screen.query_one(FlowTable).current_call()
        assert (call.module, call.step) == ("log", NAN_STEP)
        await pilot.press("escape")  # the findings list was a picker: back to the runs
        assert isinstance(pilot.app.screen, RunsScreen)

    drive(flagged_app(), script)


def test_f_on_the_run_screen_moves_that_screen_to_the_finding(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, flagged.nan)
        assert screen.step == 0
        await pilot.press("f")
        findings = pilot.app.screen
        assert isinstance(findings, FindingsScreen)
        await wait_for(pilot, lambda: findings.check_report is not None)
        await pilot.press("enter")
        assert pilot.app.screen is screen
        await wait_for(pilot, lambda: screen.calls and screen.calls[0].step == NAN_STEP)
        await wait_for(pilot, lambda: screen.query_one(FlowTable).current_call().module == "log")
        await pilot.press("enter")  # on to the layer screen, whose plots mark the step
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LayerScreen))

    drive(flagged_app(), script)


def test_layer_plots_mark_the_step_where_the_finding_starts(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, flagged.nan)
        await pilot.press("down", "down", "enter")  # <root> -> lin -> log
        layer = pilot.app.screen
        assert isinstance(layer, LayerScreen) and layer.call.module == "log"
        plots = layer.query_one(StatPlots)
        await wait_for(pilot, lambda: plots.series is not None and plots.marks != [])
        assert plots.marks == [(NAN_STEP, "error", "nan (output 0)")]
        lines = str(plots.render()).splitlines()
        found = next(line for line in lines if line.startswith("found"))
        width = max(plots.size.width - LABEL_WIDTH - TAIL_WIDTH, 10)
        # four steps over ``width`` columns: step 2 starts at the middle column
        assert found.index("▲") - LABEL_WIDTH == (width + 1) // 2
        assert found.count("▲") == 1
        assert f"nan (output 0) from step {NAN_STEP}" in found
        assert screen is not None

    drive(flagged_app(), script)


def test_layer_plots_of_a_healthy_layer_have_no_mark(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, flagged.nan)
        await pilot.press("down", "enter")  # lin: upstream of the NaN, not flagged
        plots = pilot.app.screen.query_one(StatPlots)
        await wait_for(pilot, lambda: plots.series is not None)
        await pilot.pause(0.2)
        assert plots.marks == [] and "found" not in str(plots.render())

    drive(flagged_app(), script)


def _hostile(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding]:
    yield Finding(
        rule="hostile",
        severity="warning",
        module="[red]x",
        call_index=0,
        kind="module",
        slot="[b]0",
        role="output",
        step=0,
        message="[bold]boom\x1b[31m",
    )


HOSTILE = Rule("hostile", "warning", "finds [markup] in names", _hostile)


def test_findings_from_a_plugins_rule_show_literally(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        flags = await flags_of(pilot, flagged.nan, flagged.healthy)
        assert (flags[flagged.nan].plain, flags[flagged.healthy].plain) == ("1E 1W", "1W")
        await pilot.press("down", "f")  # the healthy run
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.check_report is not None)
        table = screen.query_one(PagedTable)
        assert str(table.get_cell("0", "layer")) == "[red]x"
        assert str(table.get_cell("0", "tensor")) == "output [b]0"
        assert str(table.get_cell("0", "message")) == "[bold]boom\\x1b[31m"
        assert "rules: nan, hostile" in str(screen.query_one("#subtitle", Static).render())

    drive(flagged_app(rules=[nan.RULE, HOSTILE]), script)


def test_help_and_footer_list_f_and_the_checks(flagged, flagged_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await flags_of(pilot, flagged.nan)
        await pilot.press("question_mark")
        help_screen = pilot.app.screen
        assert isinstance(help_screen, HelpScreen)
        assert ("f", "findings") in help_screen.rows
        checks = rendered(help_screen.query_one("#help-checks", Static))
        assert "nan" in checks and "NaN or Inf" in checks
        await pilot.press("escape")
        shown = pilot.app.screen.active_bindings.items()
        assert "f" in [key for key, active in shown if active.binding.show]

    drive(flagged_app(), script)


def test_app_checks_with_the_builtin_rules_unless_given_others(flagged) -> None:
    store = open_store(flagged.path)
    try:
        assert TracerApp(StoreReader(store, "tracer.db")).rules == BUILTIN_RULES
        assert TracerApp(StoreReader(store, "tracer.db"), rules=[HOSTILE]).rules == (HOSTILE,)
    finally:
        store.close()


class _BrokenRule(Rule):
    """A rule whose thresholds cannot be worked out: the whole check fails, not one rule."""

    def limits(self, overrides: Mapping[str, float] | None = None) -> Mapping[str, float]:
        raise RuntimeError("[red]no limits")


BROKEN = _BrokenRule("broken", "error", "breaks the check", _hostile)


def test_a_failed_check_shows_question_mark_and_leaves_the_run_screen_working(
    flagged, flagged_app
) -> None:
    async def script(pilot: Pilot[None]) -> None:
        flags = await flags_of(pilot, flagged.nan, flagged.healthy)
        assert {flags[flagged.nan].plain, flags[flagged.healthy].plain} == {"?"}
        screen = RunScreen(flagged.nan)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.check_failed is not None)
        assert screen.calls != [] and screen.check_report is None
        assert "check failed" in str(screen.query_one("#title", Static).render())
        said = "the check failed: RuntimeError: [red]no limits"
        await wait_for(pilot, lambda: said in warned(pilot))
        await pilot.press("f")  # the findings screen says it too
        await wait_for(pilot, lambda: "check failed" in title_of(pilot))
        assert "[red]no limits" in title_of(pilot)

    drive(flagged_app(rules=[BROKEN]), script)


def warned(pilot: Pilot[None]) -> list[str]:
    return [n.message for n in pilot.app._notifications if n.severity == "warning"]


def title_of(pilot: Pilot[None]) -> str:
    return str(pilot.app.screen.query_one("#title", Static).render())
