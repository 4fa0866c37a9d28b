"""Engines: resolving a path or URL, the SQLite settings that let writers and readers share a
file (WAL, foreign keys, a busy timeout, writes in ``BEGIN IMMEDIATE`` transactions), read-only
SQLite files, and PostgreSQL's timeouts (connect, statement, keepalives, a client deadline)."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError
from sqlalchemy.pool import QueuePool, StaticPool

from tracer.store.errors import ReadOnlyError, ServerTimeout, StoreError, sqlite_code
from tracer.store.watchdog import Watchdog

DEFAULT_PATH = "./tracer.db"
BUSY_TIMEOUT_MS = 30_000
#: Seconds to wait for the database (a SQLite file locked by another process, a PostgreSQL
#: connection or statement) before giving up with a clear error.
DEFAULT_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
#: The environment variable, and the URL query parameter, that set that timeout.
TIMEOUT_ENV = "TRACER_DB_TIMEOUT"
TIMEOUT_PARAM = "tracer_timeout"
#: The client-side deadline leaves the server's own statement_timeout this long to answer first.
CLIENT_MARGIN_S = 2.0
INSTALL_POSTGRES = "pip install 'layer-tracer[postgres]'"
#: How a read-only SQLite file is opened: "ro", or "immutable" where "ro" cannot be.
READ_ONLY_MODES = ("ro", "immutable")
_WATCHDOGS: weakref.WeakKeyDictionary[Engine, Watchdog] = weakref.WeakKeyDictionary()
#: Execution option a connection sets to make its transactions writes (``BEGIN IMMEDIATE``).
WRITE_OPTION = "tracer_write"


def location(url_or_path: str | os.PathLike[str] | None = None) -> str:
    """The database as named: the argument, else ``$TRACER_DB``, else ``./tracer.db``."""
    if url_or_path is None or url_or_path == "":
        return os.environ.get("TRACER_DB") or DEFAULT_PATH
    return os.fspath(url_or_path)


def resolve_url(url_or_path: str | os.PathLike[str] | None) -> URL:
    """Turn a path, a SQLAlchemy URL or None (``$TRACER_DB``, else ``./tracer.db``) into a URL."""
    text = location(url_or_path)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().absolute()))
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {text!r} ({exc})") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # the driver the project installs
    return url


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases and other backends."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: URL, *, read_only: str | None = None) -> Engine:
    """Create the engine for ``url`` with the project's settings for its backend.

    ``read_only`` ("ro" or "immutable", SQLite files only) opens the file without writing to it.
    """
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url)
    if url.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open {url.render_as_string()}: {exc}") from None
    wait_s = wait_timeout()
    args: dict[str, Any] = {"check_same_thread": False, "timeout": wait_s}
    path = sqlite_file(url)
    if path is None:
        # one shared connection, or every checkout would see its own empty in-memory database
        engine = create_engine(url, connect_args=args, poolclass=StaticPool)
    elif read_only is not None:
        uri = sqlite_uri(path, read_only)
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, **args),
            poolclass=QueuePool,
            pool_size=2,
            max_overflow=8,
        )
    else:
        # pooled: a fresh connection per step would redo the pragmas and, on closing the last
        # one, checkpoint the WAL (an fsync) every time
        engine = create_engine(url, connect_args=args, pool_size=2, max_overflow=8)
    _configure_sqlite(
        engine, wal=path is not None and read_only is None, read_only=read_only, wait_s=wait_s
    )
    return engine


def sqlite_uri(path: Path, mode: str) -> str:
    """SQLite's URI for opening ``path`` read-only (``mode=ro``) or as immutable."""
    query = "immutable=1" if mode == "immutable" else "mode=ro"
    return f"file:{quote(str(path))}?{query}"


def read_only_mode(path: Path) -> str:
    """How to open an existing file without writing: "ro", else "immutable" when safe.

    A WAL database on read-only storage cannot be opened with ``mode=ro`` when its ``-shm``
    file is missing; it is then immutable (nothing can change it), unless its ``-wal`` file
    holds writes that immutable mode would not see.
    """
    try:
        conn = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=wait_timeout())
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
        return "ro"
    except sqlite3.OperationalError as exc:
        if sqlite_code(exc) != "SQLITE_CANTOPEN":
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise ReadOnlyError(
            f"{path} is on read-only storage and its last writes are still in {wal.name}: "
            "copy the database and its -wal file to writable storage to read it"
        )
    return "immutable"


def wait_timeout() -> float:
    """Seconds to wait for the database: ``$TRACER_DB_TIMEOUT``, else 30."""
    return _seconds(os.environ.get(TIMEOUT_ENV), TIMEOUT_ENV)


def server_timeout(url: URL) -> tuple[URL, float]:
    """The URL without ``tracer_timeout``, and the timeout it or ``$TRACER_DB_TIMEOUT`` sets."""
    raw = url.query.get(TIMEOUT_PARAM)
    if isinstance(raw, tuple):
        raw = raw[-1]
    url = url.difference_update_query([TIMEOUT_PARAM])
    if raw is None:
        return url, wait_timeout()
    return url, _seconds(raw, f"{TIMEOUT_PARAM} in the URL")


def _seconds(raw: str | None, source: str) -> float:
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise StoreError(f"{source} must be a number of seconds above 0, got {raw!r}")
    return value


def _postgres_args(url: URL, timeout_s: float) -> dict[str, Any]:
    """libpq settings for the timeout; any of them given in the URL is kept as given."""
    seconds = max(2, math.ceil(timeout_s))  # libpq's connect_timeout: whole seconds, 2 at least
    args: dict[str, Any] = {
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": max(1, seconds // 3),
        "keepalives_interval": max(1, seconds // 9),
        "keepalives_count": 3,
        "tcp_user_timeout": int(timeout_s * 1000),
        "options": f"-c statement_timeout={int(timeout_s * 1000)}",
    }
    return {key: value for key, value in args.items() if key not in url.query}


def _postgres_engine(url: URL) -> Engine:
    url, timeout_s = server_timeout(url)
    try:
        engine = create_engine(url, connect_args=_postgres_args(url, timeout_s))
    except (NoSuchModuleError, ImportError) as exc:
        if url.get_driver_name() in ("psycopg", "") or "psycopg" in str(exc):
            raise StoreError(
                f"cannot open {url.render_as_string()}: the PostgreSQL driver psycopg is not "
                f"installed ({INSTALL_POSTGRES})"
            ) from None
        raise StoreError(f"cannot open {url.render_as_string()}: {exc}") from None
    except ArgumentError as exc:
        raise StoreError(f"cannot open {url.render_as_string()}: {exc}") from None
    _quiet_driver_logs()
    watchdog = Watchdog(timeout_s + CLIENT_MARGIN_S)
    _WATCHDOGS[engine] = watchdog
    _configure_postgres(engine, watchdog, url.render_as_string(hide_password=True))
    return engine


def _quiet_driver_logs() -> None:
    """No tracebacks on stderr from the pool or the driver when a server goes away.

    When the server stops, SQLAlchemy's pool logs each failed reset or close with its
    traceback, and psycopg logs the pipelines it abandons; with logging not configured, Python
    prints those records on stderr. The store reports the failure itself, as one error, so
    these loggers get a handler that drops records (an application that configures logging
    still receives them through propagation).
    """
    for name in ("sqlalchemy.pool", "psycopg"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def watchdog_of(engine: Engine) -> Watchdog | None:
    """The client-side deadline of a PostgreSQL engine (None for SQLite)."""
    return _WATCHDOGS.get(engine)


def _configure_postgres(engine: Engine, watchdog: Watchdog, where: str) -> None:
    """Deadlines around every statement, commit and connection check."""

    def arm(conn: Any, *_args: Any) -> None:
        if not conn.invalidated:  # an invalidated connection sends nothing (and must not reconnect)
            watchdog.arm(conn.connection.dbapi_connection)

    def disarm(conn: Any, *_args: Any) -> None:
        if not conn.invalidated:
            watchdog.disarm(conn.connection.dbapi_connection)

    event.listen(engine, "before_cursor_execute", arm)
    event.listen(engine, "after_cursor_execute", disarm)
    event.listen(engine, "commit", arm)  # disarmed when the connection goes back to the pool
    event.listen(engine, "rollback", arm)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        conn = context.connection
        if conn is not None and not conn.invalidated:
            watchdog.disarm(conn.connection.dbapi_connection)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn is not None:
            watchdog.disarm(dbapi_conn)

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # pool_pre_ping, under the deadline: a frozen server would block the ping forever
        if record.info.pop("fresh", False):
            return
        fired = watchdog.fired
        watchdog.arm(dbapi_conn)
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception:
            if watchdog.fired != fired:
                raise ServerTimeout(timeout_message(where, watchdog.timeout_s)) from None
            raise DisconnectionError() from None  # the pool connects afresh
        finally:
            watchdog.disarm(dbapi_conn)

    @event.listens_for(engine, "engine_disposed")
    def _on_dispose(_engine: Any) -> None:
        watchdog.close()


def timeout_message(where: str, timeout_s: float) -> str:
    """The error for a server that did not answer in time."""
    return (
        f"the database server at {where} did not answer within {timeout_s:g} s "
        f"(stopped, frozen or unreachable; {TIMEOUT_ENV} sets the timeout)"
    )


def _switch_to_wal(cursor: Any, wait_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the file.

    Leaving the rollback journal needs an exclusive lock, and SQLite reports a busy file at once
    there, without the busy timeout (it is a lock upgrade): a second process opening a fresh
    database while the first one reads it (ranks of a job starting together) would fail.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(
    engine: Engine, *, wal: bool, read_only: str | None = None, wait_s: float
) -> None:
    """Install SQLAlchemy's documented recipe for taking over pysqlite's transaction control."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite would otherwise BEGIN lazily (deferred) on its own; we issue BEGIN ourselves
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        if read_only is not None:
            cursor.execute("PRAGMA query_only=1")
        if wal:
            _switch_to_wal(cursor, wait_s)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a writer takes the write lock up front, so it waits (busy timeout) instead of failing
        # with "database is locked" when it later upgrades a read lock
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
