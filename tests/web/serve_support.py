"""Starting the real ``tracer serve`` in a subprocess and reading the inspector in its page.

textual.js draws the terminal into a canvas: the text is read from xterm.js's buffer, caught
by :data:`HOOK` as each Terminal is built (its ``_addonManager`` is set in the constructor).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).parents[2]
#: Small enough to record in seconds, with the article's shapes: (50, 200, 512), (10000, 512).
QUICK = ["--every", "1", "--device", "cpu", "--set", "max_reviews=500"]
QUICK += ["--set", "epochs=1", "--set", "steps_per_epoch=1"]

HOOK = """Object.defineProperty(Object.prototype, '_addonManager', {configurable: true,
  set(v) {
    Object.defineProperty(this, '_addonManager', {value: v, writable: true, configurable: true});
    (window.__xterms = window.__xterms || []).push(this);
  }});"""
#: The terminal's visible text, one line per row (``cols`` passed: a row keeps cells past a
#: shrink otherwise).
SCREEN = """() => { const t = (window.__xterms || [])[0], rows = [];
  if (!t) return '';
  const b = t.buffer.active;
  for (let y = 0; y < t.rows; y++)
    rows.push(b.getLine(b.viewportY + y).translateToString(true, 0, t.cols));
  return rows.join('\\n'); }"""


def tracer_env(cwd: Path) -> dict[str, str]:
    """This environment without the user's ``TRACER_*`` settings; data cached in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TRACER_CACHE"] = str(cwd / "cache")
    return env


def record_runs(where: Path) -> Path:
    """Two real sentiment runs (the second with another learning rate) in ``where/runs.db``,
    recorded once per directory."""
    db, done = where / "runs.db", where / "recorded"
    if not done.exists():
        db.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tracer", "run", "sentiment", "--db", str(db)]
        for extra in ([], ["--set", "lr=0.01"]):
            subprocess.run(
                [*command, *QUICK, *extra],
                check=True,
                capture_output=True,
                cwd=where,
                env=tracer_env(where),
                timeout=600,
            )
        done.touch()
    return db


def copy_db(db: Path, to: Path) -> Path:
    """A copy of a database file, for a test that may change it."""
    target = to / "copy.db"
    shutil.copyfile(db, target)
    return target


@dataclass
class Served:
    """A running ``tracer serve``: its process, the URL it printed, its stderr so far."""

    proc: subprocess.Popen[str]
    url: str
    log: Path

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str:
        """The token in the printed URL."""
        return self.url.split("token=", 1)[1]

    def apps(self) -> list[int]:
        """The inspector processes the server started (its children)."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def stderr(self) -> str:
        """What the server wrote on stderr so far."""
        return self.log.read_text()


@contextmanager
def serving(db: Path, cwd: Path, *args: str) -> Iterator[Served]:
    """Start ``python -m tracer serve --db DB --port 0 ARGS`` and wait for its URL line; stop
    it (and anything it started) at the end."""
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracer", "serve", "--db", str(db), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd,
            env=tracer_env(cwd),
            start_new_session=True,  # the test can end the server and its apps as a group
        )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"no URL on the first line: {url!r} {log.read_text()}"
        wait_until(lambda: "Ctrl-C stops it" in log.read_text(), timeout=10)  # after the URL
        yield Served(proc, url, log)
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after 10 s."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: Any, timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def screen(page: Any) -> str:
    """The inspector's text as the page shows it."""
    return str(page.evaluate(SCREEN))


def wait_for_text(page: Any, text: str, present: bool = True, timeout: float = 30) -> None:
    """Wait until ``text`` is (or is no longer) on the inspector's screen."""
    page.wait_for_function(
        f"t => ({SCREEN})().includes(t) === {str(present).lower()}",
        arg=text,
        timeout=timeout * 1000,
    )


def open_inspector(page: Any, url: str) -> list[str]:
    """Load the inspector with every request to another host aborted; wait for the runs list
    and give the terminal the keyboard. Returns the list of foreign requests (kept up to
    date)."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    foreign: list[str] = []

    def local_only(route: Any) -> None:
        request_url = route.request.url
        if request_url.startswith(origin + "/") or request_url == origin:
            route.continue_()
        else:
            foreign.append(request_url)
            route.abort()

    page.route("**/*", local_only)
    page.add_init_script(HOOK)
    page.goto(url)
    wait_for_text(page, "completed")  # the runs list is painted
    page.focus("textarea.xterm-helper-textarea")  # the page never focuses the terminal
    return foreign
