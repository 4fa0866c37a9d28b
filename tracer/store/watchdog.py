"""A client-side deadline for PostgreSQL statements.

A server that stops answering (a frozen host, a stopped process) never sends back a
``statement_timeout`` error, and TCP keepalives do not help either: the server's kernel still
acknowledges every packet. So the store arms a deadline around each statement, commit and
connection check, and a small thread shuts the connection's socket down when one passes: the
driver's blocked read returns at once and the store reports the timeout.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any


class Watchdog:
    """Deadlines of the statements in flight on one engine's connections."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._armed: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0  # how many connections were cut; the store reads it to name the error

    def arm(self, dbapi_conn: Any) -> None:
        """Start the deadline of a statement on ``dbapi_conn``."""
        with self._lock:
            self._armed[id(dbapi_conn)] = (time.monotonic() + self.timeout_s, dbapi_conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="tracer-db-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, dbapi_conn: Any) -> None:
        """The statement on ``dbapi_conn`` returned (or failed)."""
        with self._lock:
            self._armed.pop(id(dbapi_conn), None)

    def close(self) -> None:
        """Stop the thread (the engine is disposed)."""
        self._stop.set()

    def _watch(self) -> None:
        tick = min(0.25, self.timeout_s / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [conn for deadline, conn in self._armed.values() if deadline < now]
                for conn in late:
                    self._armed.pop(id(conn), None)
            for conn in late:
                self._cut(conn)

    def _cut(self, dbapi_conn: Any) -> None:
        # Counted before the cut: the statement's thread wakes as soon as the socket is shut and
        # names its error from this count (counted after, a busy machine let it read the old
        # count and report a closed connection instead of the timeout).
        self.fired += 1
        try:
            # shutdown() acts on the socket itself, so the driver's own descriptor sees the end
            fd = os.dup(dbapi_conn.pgconn.socket)
            with socket.socket(fileno=fd) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            self.fired -= 1  # nothing was cut: nobody woke
