"""End to end in a real terminal: `tracer tui --plugin` flags a run that made NaN, `f` lists
what the checks found (a plugin's rule too), enter goes to the layer at its step."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tui_tmux import Terminal, line_with, right_pane, tracer_command
from tui_seed import NAN_STEP, record_log_run

pytestmark = [pytest.mark.tmux, pytest.mark.slow]

#: A plugin file with one rule: a warning on the ``head`` layer at the last step.
PLUGIN = textwrap.dedent(
    """
    from tracer import hookimpl
    from tracer.checks import Finding, Rule


    def watch_head(records, limits):
        last = records.steps[-1]
        yield Finding(
            rule="head-watch", severity="warning", module="head", call_index=0,
            kind="module", slot="0", role="output", step=last, message="head is watched",
        )


    @hookimpl
    def register_checks(register):
        register(Rule("head-watch", "warning", "a plugin's rule", watch_head))
    """
)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """`tracer tui --plugin watch.py` in tmux on a healthy run and, newer, one that made NaN."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    db = tmp_path / "tracer.db"
    record_log_run(db, "healthy", nan_from=None)
    record_log_run(db, "log-nan", nan_from=NAN_STEP)
    plugin = tmp_path / "watch.py"
    plugin.write_text(PLUGIN)
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "TMUX", "TRACER_DB"):
        env.pop(name, None)
    command = [*tracer_command(), "tui", "--db", str(db), "--plugin", str(plugin)]
    term = Terminal(" ".join(command), env)
    yield term
    term.close()


def test_tmux_f_lists_the_findings_and_enter_goes_to_the_nan(terminal) -> None:
    term = terminal
    # the built-in rules and the plugin's: the NaN is the one error, head-watch warns on both
    runs = term.wait_for(lambda s: "1E 1W" in line_with(s, "log-nan") and "1W" in s)
    assert "E" not in line_with(runs, "healthy").split("completed")[1]

    term.keys("Enter")  # newest first: the run that made NaN
    term.wait_for(lambda s: "findings 1E 1W (f)" in s and "(8, 4)" in s)
    term.keys("f")
    shown = term.wait_for(lambda s: "head is watched" in s)
    nan = line_with(shown, "error", "nan", "output 0")
    assert f"{NAN_STEP}-{NAN_STEP + 1}" in nan and "log made 32 NaN" in nan
    assert "3" in line_with(shown, "warning", "head-watch", "head", "output 0")

    term.keys("Enter")  # by step: the NaN (from step 2) first, then the plugin's (step 3)
    flow = term.wait_for(lambda s: f"step {NAN_STEP} " in s and "⚑ nan" in s)
    assert "⚑ nan" in line_with(right_pane(flow), "log", "Log")
    assert "⚑" not in line_with(right_pane(flow), "head", "Linear")  # its finding is at step 3
    term.keys("q")
