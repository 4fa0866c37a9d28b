"""Who may use a served inspector: the per-start token, the websocket's Origin, local hosts.

textual-serve has no authentication and no Origin check: any web page open in the user's
browser could open the websocket of a server bound to 127.0.0.1 and type into an inspector.
These checks close that, as Jupyter does: a random token per start, required for the page and
the websocket, and a websocket only from the page's own origin. Plain functions, no aiohttp.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

#: Bytes of randomness in a token (43 URL-safe characters).
TOKEN_BYTES = 32

#: Host names that only ever mean this machine.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
#: Hosts that mean "every interface": the printed URL names the machine instead.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def new_token() -> str:
    """A fresh random token, unguessable, safe in a URL and in HTML."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_ok(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token (compared in constant time)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("ascii"))


def origin_ok(origin: str | None, host: str | None) -> bool:
    """Whether a websocket's ``Origin`` is the origin its page was served from.

    The page is served at ``Host``, so a browser that loaded it sends an ``Origin`` naming the
    same host and port. Another page (any other site, a ``file:`` page, origin ``null``) does
    not; a client that sends no ``Origin`` at all is refused too.
    """
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        return False
    return hmac.compare_digest(parts.netloc.lower().encode(), host.lower().encode())


def is_local(host: str) -> bool:
    """Whether binding ``host`` listens on this machine only (a loopback address or name)."""
    name = host.strip("[]").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def url_host(host: str) -> str:
    """The host part of a URL for ``host`` as bound: brackets around IPv6, the machine's
    name for a wildcard."""
    if host in WILDCARD_HOSTS:
        return socket.gethostname()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host
