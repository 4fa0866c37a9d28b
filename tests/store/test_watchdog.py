"""The statement watchdog: a connection cut is counted before the statement's thread can wake."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tracer.store import watchdog as watchdog_module
from tracer.store.watchdog import Watchdog


class _Conn:
    """A connection whose driver reads from one end of a socket pair."""

    def __init__(self, fd: int) -> None:
        self.pgconn = type("PgConn", (), {"socket": fd})()


def test_a_cut_is_counted_before_the_socket_is_shut(monkeypatch: pytest.MonkeyPatch) -> None:
    # The statement's thread wakes the moment the socket is shut and names its error from
    # the count: the count must already be there when it wakes.
    dog = Watchdog(timeout_s=1.0)
    seen: list[int] = []
    real = socket.socket

    class Recording(real):  # type: ignore[misc,valid-type]
        def shutdown(self, how: int) -> None:
            seen.append(dog.fired)  # what a thread waking now would read
            super().shutdown(how)

    monkeypatch.setattr(watchdog_module.socket, "socket", Recording)
    ours, theirs = socket.socketpair()
    try:
        dog._cut(_Conn(ours.fileno()))
        assert seen == [1] and dog.fired == 1
        assert theirs.recv(1) == b""  # the driver's end sees the connection end
    finally:
        ours.close()
        theirs.close()


def test_a_cut_that_fails_is_not_counted() -> None:
    dog = Watchdog(timeout_s=1.0)
    broken: Any = _Conn(-1)  # no such descriptor: nothing to shut
    dog._cut(broken)
    assert dog.fired == 0
