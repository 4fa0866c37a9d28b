"""The checks behind ``tracer serve``'s refusals, one by one."""

from __future__ import annotations

import socket

import pytest

from tracer.web.serve_guard import is_local, new_token, origin_ok, token_ok, url_host


def test_new_token_is_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_token_ok_only_for_the_exact_token() -> None:
    token = new_token()
    assert token_ok(token, token)
    for given in (None, "", token[:-1], token + "x", token.swapcase(), " " + token, "é" + token):
        assert not token_ok(given, token), given


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://LOCALHOST:8000", "localhost:8000", True),
        ("https://inspector.example", "inspector.example", True),
        ("http://127.0.0.1:8000", "localhost:8000", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("file://", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000/page", "127.0.0.1:8000", False),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", None, False),
        ("", "", False),
    ],
)
def test_origin_ok_only_for_the_pages_own_origin(
    origin: str | None, host: str | None, ok: bool
) -> None:
    assert origin_ok(origin, host) is ok


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_is_local_only_for_loopback(host: str, local: bool) -> None:
    assert is_local(host) is local


def test_url_host_names_the_machine_for_a_wildcard_and_brackets_ipv6() -> None:
    assert url_host("0.0.0.0") == socket.gethostname()
    assert url_host("::1") == "[::1]"
    assert url_host("127.0.0.1") == "127.0.0.1"
    assert url_host("example.com") == "example.com"
