"""``tracer serve`` refuses whoever lacks its token, and websockets from other origins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from serve_support import Served, serving

aiohttp = pytest.importorskip("aiohttp")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server on an empty database (the checks here never reach a run)."""
    from tracer.store import open_store

    where = tmp_path_factory.mktemp("refusals")
    db = where / "empty.db"
    open_store(db).close()
    with serving(db, where) as server:
        yield server


T = TypeVar("T")


def run_apart(main: Callable[[], Coroutine[object, object, T]]) -> T:
    """``asyncio.run(main())`` in a thread of its own: the session's Playwright keeps an event
    loop running in this thread once a browser test has run in this worker."""

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def status_of(url: str) -> int:
    """The HTTP status of a GET (no redirects followed)."""

    async def get() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, allow_redirects=False) as response,
        ):
            return response.status

    return run_apart(get)


def websocket_status(url: str, origin: str | None) -> int:
    """101 when the websocket opened (then closed at once), else the refusal's status."""

    async def connect() -> int:
        headers = {"Origin": origin} if origin is not None else {}
        async with aiohttp.ClientSession(skip_auto_headers=["Origin"]) as session:
            try:
                async with session.ws_connect(url, headers=headers) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return run_apart(connect)


def ws_url(served: Served, token: str | None) -> str:
    base = served.origin.replace("http://", "ws://") + "/ws"
    return base if token is None else f"{base}/{token}"


def test_serve_prints_a_tokened_local_url_first(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:")
    assert served.url.split("/?token=", 1)[1] == served.token
    assert len(served.token) >= 40


def test_serve_page_needs_the_token(served: Served) -> None:
    assert status_of(served.url) == 200
    assert status_of(served.origin + "/") == 403
    assert status_of(served.origin + "/?token=") == 403
    assert status_of(served.origin + "/?token=" + served.token[:-1]) == 403
    assert status_of(served.origin + "/?token=" + served.token + "x") == 403


def test_serve_websocket_needs_the_token(served: Served) -> None:
    assert websocket_status(ws_url(served, None), served.origin) == 403
    assert websocket_status(ws_url(served, "wrong"), served.origin) == 403
    assert websocket_status(ws_url(served, served.token.upper()), served.origin) == 403
    assert websocket_status(ws_url(served, served.token), served.origin) == 101


def test_serve_websocket_refuses_other_origins(served: Served) -> None:
    port = served.origin.rsplit(":", 1)[1]
    url = ws_url(served, served.token)
    for origin in (
        "null",  # a file: page, a sandboxed frame
        "http://evil.example",
        f"http://evil.example:{port}",
        f"http://localhost:{port}",  # another name for this host: not the page's origin
        "http://127.0.0.1:1",
        f"https://127.0.0.1:{port}.evil.example",
        None,  # no Origin at all
    ):
        assert websocket_status(url, origin) == 403, origin
    logged = " ".join(served.stderr().split())  # the log wraps long lines
    assert "origin http://evil.example is not this server" in logged


def test_serve_static_files_have_no_listing(served: Served) -> None:
    assert status_of(served.origin + "/static/js/textual.js") == 200
    assert status_of(served.origin + "/static/") in (403, 404)


def test_serve_page_fetches_nothing_from_elsewhere(served: Served) -> None:
    async def page() -> tuple[str, dict[str, str]]:
        async with aiohttp.ClientSession() as session, session.get(served.url) as response:
            return await response.text(), dict(response.headers)

    text, headers = run_apart(page)
    assert "http://" not in text and "https://" not in text and "//fonts" not in text
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
