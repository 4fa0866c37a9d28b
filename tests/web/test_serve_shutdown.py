"""``tracer serve`` stops within 2 s with tabs open, and its apps never outlive it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import Served, alive, open_inspector, record_runs, serving, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="session")
def runs_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorded sentiment runs with the article's shapes."""
    where = tmp_path_factory.getbasetemp() / "serve-db"
    where.mkdir(exist_ok=True)
    return record_runs(where)


@pytest.fixture
def two_tabs(browser: Any) -> Iterator[Any]:
    """Opens two tabs on a server, each in its own browser context."""
    contexts: list[Any] = []

    def open_two(served: Served) -> list[int]:
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1000, "height": 700})
            contexts.append(context)
            open_inspector(context.new_page(), served.url)
        assert wait_until(lambda: len(served.apps()) == 2, timeout=10), served.apps()
        return served.apps()

    yield open_two
    for context in contexts:
        context.close()


@pytest.mark.parametrize(
    ("signum", "send"),
    [(signal.SIGTERM, os.kill), (signal.SIGINT, os.kill), (signal.SIGINT, os.killpg)],
    ids=["sigterm", "sigint", "ctrl-c-in-a-terminal"],  # the last reaches the apps too
)
def test_serve_stops_within_2_s_with_two_tabs_open(
    runs_db: Path, tmp_path: Path, two_tabs: Any, signum: int, send: Any
) -> None:
    with serving(runs_db, tmp_path) as served:
        apps = two_tabs(served)
        started = time.monotonic()
        send(served.proc.pid, signum)
        served.proc.wait(timeout=10)
        took = time.monotonic() - started
        assert not [pid for pid in apps if alive(pid)]
    print(f"tracer serve stopped by {signal.Signals(signum).name} with 2 tabs in {took:.2f} s")
    assert took < 2
    assert served.proc.returncode == 0
    assert "stopped" in served.stderr()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_serve_killed_leaves_no_inspector_running(
    runs_db: Path, tmp_path: Path, two_tabs: Any
) -> None:
    with serving(runs_db, tmp_path) as served:
        apps = two_tabs(served)
        killed = time.monotonic()
        os.kill(served.proc.pid, signal.SIGKILL)  # the server alone, not its group
        served.proc.wait(timeout=10)
        assert wait_until(lambda: not [pid for pid in apps if alive(pid)], timeout=5)
        took = time.monotonic() - killed
    print(f"inspector processes gone {took:.2f} s after SIGKILL of the server")
