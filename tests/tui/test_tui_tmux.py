"""End to end in a real terminal: tmux runs `tracer tui` on runs that `tracer run` recorded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tmux, pytest.mark.slow]

#: The article's batch and sequence length, one training step per run, so recording stays short.
RECORD = ["--set", "max_reviews=500", "--set", "epochs=1", "--set", "steps_per_epoch=1"]


def tracer_command() -> list[str]:
    """The installed `tracer` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("tracer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tracer"]


def record(db: Path, name: str, hidden: int, env: dict[str, str]) -> None:
    """Train and trace the sentiment pipeline for one step into ``db``."""
    args = ["run", "sentiment", "--db", str(db), "--name", name, "--every", "1", *RECORD]
    args += ["--set", f"hidden_dim={hidden}", "--device", "cpu"]
    subprocess.run(
        [*tracer_command(), *args], env=env, check=True, capture_output=True, timeout=600
    )


class Terminal:
    """One tmux server of our own (its own socket), one 160 x 48 window running a command."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.socket = f"tracer-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "ui", "-x", "160", "-y", "48", command
        )

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        """Type keys one at a time, as a person would."""
        for key in keys:
            self.tmux("send-keys", "-t", "ui", key)
            time.sleep(0.15)

    def screen(self, colours: bool = False) -> str:
        """What the window shows now (with SGR escapes when ``colours``)."""
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "ui")

    def wait_for(self, check: Callable[[str], bool], timeout: float = 20) -> str:
        """Poll the screen until ``check`` accepts it."""
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if check(shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"the screen never showed what was expected:\n{shown}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A database with the sentiment pipeline recorded at hidden_dim 512 and 256."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    folder = tmp_path_factory.mktemp("sentiment")
    env = {**os.environ, "TRACER_CACHE": str(folder / "cache"), "TERM": "xterm-256color"}
    env.pop("TRACER_DB", None)
    # Textual takes COLUMNS / LINES over the real terminal size (pytest workers may set them)
    for name in ("COLUMNS", "LINES", "TMUX"):
        env.pop(name, None)
    db = folder / "tracer.db"
    record(db, "baseline", 512, env)
    record(db, "small", 256, env)
    return db, env


@pytest.fixture
def terminal(recorded: tuple[Path, dict[str, str]]) -> Iterator[Terminal]:
    """`tracer tui` on the recorded database, in tmux."""
    db, env = recorded
    command = " ".join([*tracer_command(), "tui", "--db", str(db)])
    term = Terminal(command, env)
    yield term
    term.close()


def right_pane(screen: str) -> str:
    """The right-hand pane of side-by-side panes (the flow beside the module tree)."""
    return "\n".join(line.split("││", 1)[-1] for line in screen.splitlines())


def line_with(screen: str, *words: str) -> str:
    """The first screen line holding every word."""
    return next((line for line in screen.splitlines() if all(w in line for w in words)), "")


def backgrounds(line: str) -> set[str]:
    """The background colours a captured line uses (SGR 4x / 48;...)."""
    found = set()
    for codes in re.findall(r"\x1b\[([0-9;]*)m", line):
        parts = codes.split(";")
        for i, part in enumerate(parts):
            if part == "48":
                found.add(";".join(parts[i : i + 5 if parts[i + 1 : i + 2] == ["2"] else i + 3]))
            elif len(part) == 2 and part.startswith("4") and part != "49":
                found.add(part)
    return found


def shows_runs(screen: str) -> bool:
    """Both runs listed, with the config key that differs as a column."""
    return "hidden_dim" in screen and "completed" in line_with(screen, "baseline", "512")


def shows_article_flow(screen: str) -> bool:
    """The article's shapes, call by call, in the flow pane."""
    flow = right_pane(screen)
    return all(
        (
            "(50, 200, 30)" in line_with(flow, "embedding", "(50, 200)"),
            "(50, 200, 512)" in line_with(flow, "lstm", "(50, 200, 30)"),
            "(10000, 512)" in line_with(flow, "view", "(50, 200, 512)"),
            "(10000, 1)" in line_with(flow, "fc", "(10000, 512)"),
            "(50,)" in line_with(flow, "getitem", "(50, 200)"),
            "1.0 (1, 50, 512)" in flow,  # the LSTM's h
        )
    )


def shows_hidden_size_diff(screen: str) -> bool:
    """The config change on top, the LSTM row marked, the embedding row not."""
    lstm = line_with(screen, "lstm", "(50, 200, 512)")
    return (
        "hidden_dim 512 → 256" in screen
        and "≠shape" in lstm
        and "(50, 200, 256)" in lstm
        and "≠" not in line_with(screen, "embedding", "(50, 200, 30)")
    )


def test_tmux_inspector_shows_the_articles_flow_and_the_hidden_size_diff(terminal) -> None:
    term = terminal
    term.wait_for(shows_runs)
    term.keys("Down", "Enter")  # newest first: small, then baseline (hidden_dim 512)
    term.wait_for(shows_article_flow)
    term.keys("n")
    term.wait_for(lambda s: "(batch_size, seq_length, hidden_dim)" in s)

    term.keys("Down", "Down", "Enter")  # <root> -> embedding -> lstm, open its detail
    term.wait_for(lambda s: "LSTM(30, 512" in s and "across steps" in s and "weight_hh_l0" in s)

    term.keys("Escape")
    term.wait_for(lambda s: "names on (n)" in s)
    term.keys("Escape")
    term.wait_for(lambda s: "diff marked" in s)
    term.keys("Space", "Up", "Space", "d")  # mark baseline (last row), then small
    term.wait_for(shows_hidden_size_diff)
    coloured = term.screen(colours=True)
    lstm_colours = backgrounds(line_with(coloured, "lstm", "shape"))
    embedding_colours = backgrounds(line_with(coloured, "embedding"))
    assert lstm_colours - embedding_colours, "the LSTM row's changed cells are not highlighted"

    term.keys("q")
