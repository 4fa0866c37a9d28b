"""The inspector on a hostile database: what reaches the terminal is the literal text."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from tui_pilot import drive, wait_for
from tui_seed import frozen_provenance, seed_run

from tracer.records import literal
from tracer.store import Store, open_store
from tracer.tui.app import TracerApp
from tracer.tui.data import StoreReader
from tracer.tui.screens.diff import DiffScreen
from tracer.tui.screens.help import HelpScreen, help_rows
from tracer.tui.screens.layer import LayerScreen
from tracer.tui.screens.metrics import MetricsScreen
from tracer.tui.screens.run import RunScreen
from tracer.tui.screens.runs import RunsScreen
from tracer.tui.widgets.diff_table import DiffTable
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.stat_plots import StatPlots

#: Markup (rich's and Textual's), a colour escape, BEL, CR, LF, DEL and a C1 control.
HOSTILE = "[b]art[/b][red]x[$accent]\x1b[31m\x07\r\n\x7f\x9b|"
SHOWN = literal(HOSTILE)
#: What Textual itself writes: control sequences (cursor moves, colours) and nothing else.
_OWN_SEQUENCES = re.compile(r"\x1b\[[0-9;:?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def terminal_output(pilot: Pilot[None]) -> str:
    """What the app sends to the terminal to draw the whole screen now."""
    update = pilot.app.screen._compositor.render_update(full=True)
    return update.render_segments(pilot.app.console)


def assert_literal_on_screen(pilot: Pilot[None], *texts: str) -> str:
    """Each text is on screen as written, and no control character reaches the terminal
    except in the app's own escape sequences."""
    raw = terminal_output(pilot)
    plain = _OWN_SEQUENCES.sub("", raw)
    for char in ("\x1b", "\x07", "\r", "\x7f", "\x9b"):
        assert char not in plain, f"{char!r} reached the terminal"
    for text in texts:
        assert text in plain, f"{text!r} is not on screen"
    return plain


def poison(db: Path, run_id: int, text: str) -> None:
    """Write ``text`` straight into the file as the run's name, a config key and value, a
    metric name, the host, the command, the LSTM's module path and its first state's slot."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        config = json.loads(row[0])
        config[text] = text
        conn.execute(
            "UPDATE runs SET name = ?, config = ?, host = ?, command = ?, last_metrics = ? "
            "WHERE id = ?",
            (text, json.dumps(config), text, text, json.dumps({text: 0.5}), run_id),
        )
        conn.execute(
            "UPDATE metrics SET name = ? WHERE run_id = ? AND name = 'loss'", (text, run_id)
        )
        conn.execute(
            "UPDATE calls SET module = ? WHERE run_id = ? AND module = 'lstm'", (text, run_id)
        )
        conn.execute(
            "UPDATE modules SET path = ? WHERE run_id = ? AND path = 'lstm'", (text, run_id)
        )
        conn.execute(
            "UPDATE tensors SET slot = ? WHERE run_id = ? AND slot = '1.0'", (text, run_id)
        )


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, int, int]]:
    """Run 1 with every user string hostile, run 2 a plain one (hidden size 256)."""
    path = tmp_path / "tracer.db"
    store = open_store(path)
    with frozen_provenance(monkeypatch) as clock:
        first = seed_run(store, "first", hidden=512, clock=clock)
        second = seed_run(store, "plain", hidden=256, clock=clock)
    poison(path, first, HOSTILE)
    yield store, first, second
    store.close()


def app_on(store: Store) -> TracerApp:
    """An inspector on the store (a fixed location label)."""
    return TracerApp(StoreReader(store, "tracer.db"), poll_interval=0.1)


def test_tui_runs_screen_shows_hostile_names_literally(hostile) -> None:
    store, _, _ = hostile

    async def script(pilot: Pilot[None]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: len(screen.all_runs) == 2)
        await pilot.pause(0.1)
        # the name, and the hostile config key as a column heading with its value below
        plain = assert_literal_on_screen(pilot, SHOWN[:40])
        assert plain.count(SHOWN[:40]) >= 2

    drive(app_on(store), script, size=(240, 30))


def test_tui_run_metrics_and_layer_screens_show_hostile_strings_literally(hostile) -> None:
    store, first, _ = hostile

    async def script(pilot: Pilot[None]) -> None:
        run_screen = RunScreen(first)
        await pilot.app.push_screen(run_screen)
        table = run_screen.query_one(FlowTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        await pilot.pause(0.1)
        assert_literal_on_screen(pilot, f"run {first} {SHOWN}", SHOWN[:30])

        metrics = MetricsScreen(first)
        await pilot.app.push_screen(metrics)
        await wait_for(pilot, lambda: metrics.curves is not None)
        await pilot.pause(0.1)
        assert_literal_on_screen(pilot, SHOWN[:12], SHOWN[:30])  # metric, config, host
        pilot.app.pop_screen()

        run = store.get_run(first)
        call = next(c for c in store.flow(first, 0) if c.module == HOSTILE)
        module = next(m for m in store.module_tree(first) if m.path == HOSTILE)
        layer = LayerScreen(run, call, module)
        await pilot.app.push_screen(layer)
        await wait_for(pilot, lambda: layer.query_one(StatPlots).series is not None)
        await pilot.pause(0.1)
        assert_literal_on_screen(pilot, SHOWN[:30])

    drive(app_on(store), script, size=(240, 50))


def test_tui_diff_screen_shows_hostile_strings_literally(hostile) -> None:
    store, first, second = hostile

    async def script(pilot: Pilot[None]) -> None:
        screen = DiffScreen(first, second)
        await pilot.app.push_screen(screen)
        table = screen.query_one(DiffTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        await pilot.pause(0.1)
        assert_literal_on_screen(pilot, f"{first} {SHOWN}", f"{SHOWN} {SHOWN} → (absent)")

    drive(app_on(store), script, size=(300, 40))


def test_tui_runs_screen_cuts_a_100kb_name(hostile, tmp_path: Path) -> None:
    store, first, _ = hostile
    name = "n" * 100_000
    with sqlite3.connect(tmp_path / "tracer.db") as conn:
        conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, first))

    async def script(pilot: Pilot[None]) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: len(screen.all_runs) == 2)
        start = time.monotonic()
        run_screen = RunScreen(first)
        await pilot.app.push_screen(run_screen)
        await wait_for(pilot, lambda: run_screen.query_one(FlowTable).row_count > 0)
        await pilot.pause(0.1)
        assert_literal_on_screen(pilot, f"run {first} " + "n" * 79 + "…")
        assert time.monotonic() - start < 5

    drive(app_on(store), script)


def test_tui_help_lists_each_key_once(hostile) -> None:
    store, first, _ = hostile

    async def script(pilot: Pilot[None]) -> None:
        for screen in (pilot.app.screen, MetricsScreen(first), DiffScreen(first, first)):
            keys = [key for key, _ in help_rows(screen)]
            assert len(keys) == len(set(keys)), keys
        runs_help = dict(help_rows(pilot.app.screen))
        assert runs_help["escape"] == "clear filter"  # the runs screen's own meaning
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        plain = assert_literal_on_screen(pilot, "clear filter")
        assert plain.count("escape") == 1

    drive(app_on(store), script)


@pytest.mark.tmux
@pytest.mark.slow
def test_tui_in_a_real_terminal_shows_hostile_names_literally(hostile, tmp_path: Path) -> None:
    import os
    import shutil

    from test_tui_tmux import Terminal, tracer_command

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "TMUX", "TRACER_DB"):
        env.pop(name, None)
    command = " ".join([*tracer_command(), "tui", "--db", str(tmp_path / "tracer.db")])
    term = Terminal(command, env)
    try:
        shown = term.wait_for(lambda screen: "plain" in screen)
        assert SHOWN[:40] in shown  # an ESC or CR sent raw would have moved or recoloured it
        coloured = term.screen(colours=True)
        assert "\x07" not in coloured and "\x1b[31m" not in coloured
    finally:
        term.close()


@pytest.mark.tmux
@pytest.mark.slow
def test_tui_sigterm_restores_the_terminal_and_exits_143(hostile, tmp_path: Path) -> None:
    import os
    import shutil
    import signal

    from test_tui_tmux import Terminal, tracer_command

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "TMUX", "TRACER_DB"):
        env.pop(name, None)
    tui = " ".join([*tracer_command(), "tui", "--db", str(tmp_path / "tracer.db")])
    term = Terminal(f"sh -c '{tui}; echo EXIT=$?; sleep 60'", env)
    try:
        term.wait_for(lambda screen: "plain" in screen)
        shell = int(term.tmux("display", "-p", "-t", "ui", "#{pane_pid}").strip())
        children = subprocess.run(
            ["pgrep", "-P", str(shell)], capture_output=True, text=True, check=True
        )
        os.kill(int(children.stdout.split()[0]), signal.SIGTERM)
        shown = term.wait_for(lambda screen: "EXIT=" in screen)
        assert "EXIT=143" in shown
        assert "Traceback" not in shown and "plain" not in shown  # the inspector is gone
    finally:
        term.close()
