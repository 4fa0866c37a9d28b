"""Failures become notifications or clear messages, never tracebacks; the UI never loads torch."""

from __future__ import annotations

import os
import subprocess

import pytest
from test_tui_tmux import tracer_command
from textual.pilot import Pilot
from tui_pilot import drive, wait_for

from tracer.store import open_store
from tracer.tui.app import main
from tracer.tui.screens.run import RunScreen


def errors(pilot: Pilot[None]) -> list[str]:
    """Messages of the error notifications on screen."""
    return [n.message for n in pilot.app._notifications if n.severity == "error"]


def test_run_screen_reports_a_run_deleted_meanwhile(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        seeded.store.delete_run(seeded.small)
        await pilot.app.push_screen(RunScreen(seeded.small))
        await wait_for(pilot, lambda: bool(errors(pilot)))
        assert str(seeded.small) in errors(pilot)[0]
        assert isinstance(pilot.app.screen, RunScreen)  # still running, nothing crashed
        await pilot.press("escape")
        assert pilot.app.screen.__class__.__name__ == "RunsScreen"

    drive(make_app(), script)


def test_runs_screen_survives_a_database_that_goes_away(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "RunsScreen")
        for suffix in ("", "-wal", "-shm"):
            seeded.path.with_name(seeded.path.name + suffix).unlink(missing_ok=True)
        pilot.app.data.store.engine.dispose()  # drop pooled connections to the old file
        await wait_for(pilot, lambda: bool(errors(pilot)))
        assert pilot.app.is_running

    drive(make_app(), script)


def test_main_refuses_a_missing_database_with_a_message(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(str(tmp_path / "nothing-here.db"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "no database at" in err and "nothing-here.db" in err


def test_main_refuses_a_file_that_is_not_a_tracer_database(tmp_path, capsys) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(SystemExit) as exit_info:
        main(str(junk))
    assert exit_info.value.code == 1
    assert "cannot read" in capsys.readouterr().err
    assert junk.read_text().startswith("these are my notes")  # never modified


@pytest.mark.parametrize(
    ("plugin", "said"),
    [
        (None, "watch.py"),  # no such file
        ("raise RuntimeError('[red]boom')\n", "[red]boom"),
        (
            "from tracer import hookimpl\n\n@hookimpl\ndef register_checks(register):\n"
            "    register('not a rule')\n",
            "Rule",
        ),
    ],
)
def test_tui_refuses_a_broken_plugin_in_one_line(tmp_path, plugin, said) -> None:
    path = tmp_path / "watch.py"
    if plugin is not None:
        path.write_text(plugin)
    db = tmp_path / "tracer.db"
    open_store(db).close()
    env = {k: v for k, v in os.environ.items() if k != "TRACER_DB"}
    done = subprocess.run(
        [*tracer_command(), "tui", "--db", str(db), "--plugin", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert said in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
    assert done.stdout == ""
