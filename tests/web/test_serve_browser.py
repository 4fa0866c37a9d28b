"""``tracer serve`` in a real Chromium: the inspector's screens, offline, read-only, timed."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serve_support import copy_db, open_inspector, record_runs, screen, serving, wait_for_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="session")
def runs_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorded sentiment runs with the article's shapes."""
    where = tmp_path_factory.getbasetemp() / "serve-db"
    where.mkdir(exist_ok=True)
    return record_runs(where)


def test_serve_shows_the_flow_and_the_diff_offline(
    runs_db: Path, tmp_path: Path, page: Any, artifacts: str
) -> None:
    with serving(runs_db, tmp_path) as served:
        foreign = open_inspector(page, served.url)
        page.keyboard.press("Enter")
        wait_for_text(page, "(50, 200, 512)")
        assert "(10000, 512)" in screen(page)
        wait_for_text(page, "next step")  # the key bar is drawn last
        page.screenshot(path=str(Path(artifacts) / "serve-flow.png"))

        page.keyboard.press("Escape")
        wait_for_text(page, "(50, 200, 512)", present=False)
        page.keyboard.press(" ")  # mark the newest run
        page.keyboard.press("ArrowDown")
        page.keyboard.press(" ")  # and the one before
        page.keyboard.press("d")
        wait_for_text(page, "aligned flows")
        wait_for_text(page, "(50, 200, 512)")
        wait_for_text(page, "next change")
        page.screenshot(path=str(Path(artifacts) / "serve-diff.png"))
        assert foreign == []  # nothing was asked of another host


def test_serve_read_only_refuses_to_delete(runs_db: Path, tmp_path: Path, page: Any) -> None:
    from tracer.store import open_store

    db = copy_db(runs_db, tmp_path)
    with serving(db, tmp_path, "--read-only") as served:
        open_inspector(page, served.url)
        page.keyboard.press("x")
        wait_for_text(page, "read-only: runs cannot be deleted")
    store = open_store(db)
    try:
        assert len(store.list_runs()) == 2
    finally:
        store.close()


def test_serve_read_write_deletes_after_asking(runs_db: Path, tmp_path: Path, page: Any) -> None:
    from tracer.store import open_store

    db = copy_db(runs_db, tmp_path)
    with serving(db, tmp_path) as served:
        open_inspector(page, served.url)
        page.keyboard.press("x")
        wait_for_text(page, "Delete run 2")
        page.keyboard.press("y")
        wait_for_text(page, "deleted run 2")
    store = open_store(db)
    try:
        assert [run.id for run in store.list_runs()] == [1]
    finally:
        store.close()


def test_serve_start_to_runs_list_is_quick(runs_db: Path, tmp_path: Path, page: Any) -> None:
    started = time.monotonic()
    with serving(runs_db, tmp_path) as served:
        listening = time.monotonic() - started
        open_inspector(page, served.url)
        took = time.monotonic() - started
    print(f"tracer serve: URL printed after {listening:.2f} s, runs list in the page {took:.2f} s")
    assert took < 15


#: What a page of another site would run: open the inspector's websocket (here even with the
#: right token) and report whether it opened.
ATTACK = """url => new Promise(resolve => {
  const ws = new WebSocket(url);
  ws.onopen = () => { ws.close(); resolve("open"); };
  ws.onerror = () => resolve("refused");
})"""


@pytest.fixture
def other_local_site(tmp_path: Path) -> Iterator[str]:
    """Another web server on the loopback (a dev server, a notebook), serving one page.

    A public site is kept from the loopback by Chromium itself (Local Network Access), so
    the page that tests the server's own check is a local one."""
    (tmp_path / "index.html").write_text("<p>another site</p>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_a_page_of_another_site_in_the_same_browser(
    runs_db: Path, tmp_path: Path, page: Any, other_local_site: str
) -> None:
    with serving(runs_db, tmp_path) as served:
        page.goto(other_local_site)
        ws = served.origin.replace("http://", "ws://") + "/ws/" + served.token
        assert page.evaluate(ATTACK, ws) == "refused"
        assert served.apps() == []  # no inspector was started for it
        page.goto(served.url)  # the same browser, from the page itself: allowed
        assert page.evaluate(ATTACK, ws) == "open"
