"""Engines: resolving a path or URL, and the SQLite settings that let writers and readers share
a file (WAL, foreign keys, a busy timeout, writes in ``BEGIN IMMEDIATE`` transactions)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from tracer.store.errors import StoreError

DEFAULT_PATH = "./tracer.db"
BUSY_TIMEOUT_MS = 30_000
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
        return make_url(text)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {text!r} ({exc})") from None


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases and other backends."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: URL) -> Engine:
    """Create the engine for ``url`` with the project's settings for its backend."""
    if url.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open {url.render_as_string()}: {exc}") from None
    args: dict[str, Any] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
    in_memory = sqlite_file(url) is None
    if in_memory:
        # one shared connection, or every checkout would see its own empty in-memory database
        engine = create_engine(url, connect_args=args, poolclass=StaticPool)
    else:
        # pooled: a fresh connection per step would redo the pragmas and, on closing the last
        # one, checkpoint the WAL (an fsync) every time
        engine = create_engine(url, connect_args=args, pool_size=2, max_overflow=8)
    _configure_sqlite(engine, wal=not in_memory)
    return engine


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the file.

    Leaving the rollback journal needs an exclusive lock, and SQLite reports a busy file at once
    there, without the busy timeout (it is a lock upgrade): a second process opening a fresh
    database while the first one reads it (ranks of a job starting together) would fail.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """Install SQLAlchemy's documented recipe for taking over pysqlite's transaction control."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite would otherwise BEGIN lazily (deferred) on its own; we issue BEGIN ourselves
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if wal:
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a writer takes the write lock up front, so it waits (busy timeout) instead of failing
        # with "database is locked" when it later upgrades a read lock
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
