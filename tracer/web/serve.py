"""``tracer serve``: the Textual inspector served to a browser by textual-serve, guarded.

Each browser tab gets its own ``tracer tui`` process (textual-serve's model: the same app, its
screens, keys and live updates, drawn by xterm.js in the page). On top of textual-serve 1.1.3
this server adds what it lacks: a token per start for the page and the websocket, the
websocket only from the page's own origin, a page that fetches nothing from other hosts, app
processes that die with the server, and a stop within :data:`STOP_S` seconds with tabs open.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from textual_serve.server import Server, to_int

from tracer.web import serve_page
from tracer.web.serve_guard import new_token, origin_ok, token_ok, url_host
from tracer.web.serve_process import InspectorProcess

log = logging.getLogger("tracer.serve")

#: Seconds a tab's app gets to quit when the server stops before it is killed.
STOP_S = 0.8
#: What stops the server (Ctrl-C, and SIGTERM from a service manager or ``kill``).
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds aiohttp waits for open connections at the end (the websockets are closed by then).
SHUTDOWN_S = 0.25


@dataclass(frozen=True)
class ServeOptions:
    """What ``tracer serve`` was asked for."""

    db: str
    host: str = "127.0.0.1"
    port: int = 8000
    read_only: bool = False
    #: The app each tab runs (default: this interpreter's ``tracer tui``).
    argv: Sequence[str] = (sys.executable, "-m", "tracer", "tui")
    token: str = field(default_factory=new_token)


class InspectorServer(Server):
    """textual-serve's server with the token, the Origin check and a bounded stop."""

    def __init__(self, options: ServeOptions, announce: Callable[[str], None]) -> None:
        """``announce`` gets the URL to open, once the port is bound."""
        super().__init__(" ".join(options.argv), host=options.host, port=options.port)
        self.options = options
        self.announce = announce
        self.sessions: set[tuple[InspectorProcess, web.WebSocketResponse]] = set()
        self.stopping = False

    @property
    def environment(self) -> Mapping[str, str]:
        """What each app is told: the database and whether it may delete."""
        return {
            "TRACER_DB": self.options.db,
            "TRACER_READ_ONLY": "1" if self.options.read_only else "0",
        }

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket),
                web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                # a download's key is random and only an app started from the page knows it
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, show_index=False, name="static"),
            ]
        )
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The page needs ``?token=``; the websocket its token and the page's own origin."""
        if request.path == "/":
            if not token_ok(request.query.get("token"), self.options.token):
                return self._refuse(request, "no valid token")
        elif request.path == "/ws" or request.path.startswith("/ws/"):
            given = request.path[len("/ws/") :] if request.path.startswith("/ws/") else None
            if not token_ok(given, self.options.token):
                return self._refuse(request, "no valid token")
            origin = request.headers.get("Origin")
            if not origin_ok(origin, request.headers.get("Host")):
                return self._refuse(request, f"origin {origin or '(none)'} is not this server")
        return await handler(request)  # type: ignore[no-any-return]

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        log.warning("refused %s from %s: %s", request.path[:3], request.remote, why)
        return web.Response(
            status=403,
            text="403: open the address tracer serve printed, with its token\n",
            headers={"Cache-Control": "no-store"},
        )

    async def handle_index(self, request: web.Request) -> web.Response:  # type: ignore[override]
        """The page, which loads textual.js and connects its websocket back here."""
        font_size = to_int(request.query.get("fontsize", "16"), 16)
        page = serve_page.render(self.options.token, font_size=min(max(font_size, 6), 64))
        return web.Response(text=page, content_type="text/html", headers=dict(serve_page.HEADERS))

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: a websocket and its own inspector process, stopped with the tab."""
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        if self.stopping:
            await websocket.close()
            return websocket
        app = InspectorProcess(
            self.options.argv,
            self.environment,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        session = (app, websocket)
        self.sessions.add(session)
        try:
            await app.start(
                to_int(request.query.get("width", "80"), 80),
                to_int(request.query.get("height", "24"), 24),
            )
            log.info("tab opened from %s (app pid %s)", request.remote, app.pid)
            await self._process_messages(websocket, app)
        except Exception as exc:  # a malformed message, a failed start: this tab only
            log.warning("closed a tab: %s: %s", type(exc).__name__, exc)
        finally:
            self.sessions.discard(session)
            await app.stop(STOP_S)
            await websocket.close()
        return websocket

    async def end_sessions(self) -> None:
        """Stop every tab's app (killed after :data:`STOP_S`) and close the websockets."""
        self.stopping = True
        sessions = list(self.sessions)
        await asyncio.gather(*(app.stop(STOP_S) for app, _ in sessions), return_exceptions=True)
        await asyncio.gather(*(ws.close() for _, ws in sessions), return_exceptions=True)

    async def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop within about :data:`STOP_S` seconds."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(
            await self._make_app(), handle_signals=False, shutdown_timeout=SHUTDOWN_S
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.options.host, self.options.port)
            await site.start()
            self.announce(self.url(runner))
            await stop.wait()
            await self.end_sessions()
        finally:
            await runner.cleanup()
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    def url(self, runner: web.AppRunner) -> str:
        """The address to open: the bound port (``--port 0`` picks one) and the token."""
        port = runner.addresses[0][1] if runner.addresses else self.options.port
        return f"http://{url_host(self.options.host)}:{port}/?token={self.options.token}"


def serve(options: ServeOptions, announce: Callable[[str], None]) -> None:
    """Run the server until it is signalled (blocks)."""
    asyncio.run(InspectorServer(options, announce).run())
