"""Schema versioning: refuse databases we must not touch, create or upgrade the rest (Alembic).

Every check happens before anything is written: a SQLite file is inspected through a plain
read-only connection before the store's engine (which switches the file to WAL) ever opens it.
Creation and upgrade run inside one write transaction that first takes a lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so processes that open a
fresh database at the same time create the schema exactly once.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

import tracer
from tracer.store.engine import WRITE_OPTION, read_only_mode, sqlite_uri
from tracer.store.errors import (
    DamagedError,
    ReadOnlyError,
    SchemaError,
    StoreError,
    sqlite_code,
    sqlite_meaning,
)

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Every revision in migrations/versions, oldest first. Spelled out so that opening an up-to-date
#: database never imports Alembic (a third of a second); a test checks it against the scripts.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004")
#: Advisory lock key serialising schema creation on PostgreSQL ("tracer" in ASCII).
ADVISORY_KEY = 0x747261636572


def _config() -> Config:
    from alembic.config import Config  # lazy: only creating or upgrading needs Alembic

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def script_revisions() -> tuple[str, ...]:
    """The revisions Alembic finds in migrations/versions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))


def head() -> str:
    """The newest schema revision."""
    return REVISIONS[-1]


def classify(tables: list[str], revision: list[str], where: str) -> str | None:
    """Return the database's revision (None when empty), or raise SchemaError when we must not
    touch it."""
    if not tables:
        return None
    if "runs" in tables and "alembic_version" not in tables:
        raise SchemaError(
            f"{where} has a runs table but no schema revision (its alembic_version table is "
            "missing): the database is damaged, or was not made by layer-tracer"
        )
    if "alembic_version" not in tables or "runs" not in tables:
        shown = ", ".join(sorted(tables)[:8])
        raise SchemaError(f"{where} is not a layer-tracer database (it has tables: {shown})")
    if not revision:
        raise SchemaError(
            f"{where} has no schema revision (its alembic_version table is empty): "
            "the database is damaged, or was not made by layer-tracer"
        )
    if len(revision) != 1:
        raise SchemaError(
            f"{where} has several schema revisions ({', '.join(revision)}): the database is "
            "damaged, or was not made by layer-tracer"
        )
    if revision[0] not in REVISIONS:
        raise SchemaError(
            f"{where} has schema revision {revision[0]}, which this layer-tracer "
            f"{tracer.__version__} does not know (newest known: {head()}); it was probably "
            "written by a newer layer-tracer: upgrade layer-tracer to open it"
        )
    return revision[0]


@dataclass(frozen=True)
class SqliteFile:
    """What opening a SQLite file found: how to open it and its schema revision."""

    read_only: str | None  # None: writable; else the read-only mode ("ro" or "immutable")
    revision: str | None  # None: a new or empty database
    why_read_only: str = ""


def writable(path: Path) -> bool:
    """Whether this process may write the database (and create its -wal and -shm files)."""
    if not os.access(path, os.W_OK):
        return False
    if os.access(path.parent, os.W_OK):
        return True
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    return all(p.exists() and os.access(p, os.W_OK) for p in sidecars)


def why_read_only(path: Path) -> str:
    """Why a file cannot be written: a read-only file system, or permissions."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except OSError:
        pass
    return "no write permission"


def precheck_sqlite_file(path: Path) -> SqliteFile:
    """Refuse a file that is not a SQLite database or not ours, without modifying it."""
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"cannot create {path}: directory {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise ReadOnlyError(
                f"cannot create {path}: directory {path.parent} is read-only "
                f"({why_read_only(path.parent)})"
            )
        return SqliteFile(None, None)
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path}: permission denied")
    mode = None if writable(path) else "ro"
    why = "" if mode is None else why_read_only(path)
    if path.stat().st_size == 0:
        if mode is not None:
            raise ReadOnlyError(f"{path} is an empty database and read-only ({why})")
        return SqliteFile(None, None)  # an empty file is a fresh database to SQLite
    # No open()/close() of the file here: closing any descriptor of a SQLite file drops every
    # POSIX lock this process holds on it, which would silently break other open stores.
    # SQLite's own connections share lock state per inode, so asking sqlite3 is safe.
    try:
        if mode is not None:
            mode = read_only_mode(path)
        conn = sqlite3.connect(sqlite_uri(path, mode or "ro"), uri=True, timeout=30)
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            revision = []
            if "alembic_version" in tables:
                revision = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        code = sqlite_code(exc)
        if code == "SQLITE_NOTADB":
            raise SchemaError(
                f"{path} is not a SQLite database (corrupt or another kind of file)"
            ) from None
        if code == "SQLITE_CORRUPT":
            raise DamagedError(
                f"{path} is damaged ({str(exc).strip()}): "
                f"`tracer db check --db {path}` lists the damage"
            ) from None
        raise StoreError(f"cannot open {path}: {sqlite_meaning(exc)}") from None
    return SqliteFile(mode, classify(tables, revision, str(path)), why)


def _current(conn: Connection, where: str) -> str | None:
    tables = inspect(conn).get_table_names()
    revision: list[str] = []
    if "alembic_version" in tables:
        revision = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return classify(tables, revision, where)


def check_read_only_schema(engine: Engine, where: str, why: str) -> None:
    """A read-only database cannot be created or upgraded: it must be at the newest revision."""
    with engine.connect() as conn, conn.begin():
        revision = _current(conn, where)
    if revision is None:
        raise ReadOnlyError(f"{where} holds no runs yet and is read-only ({why})")
    if revision != head():
        raise ReadOnlyError(
            f"{where} has the older schema revision {revision} and is read-only ({why}), so it "
            "cannot be upgraded: open it once where it can be written"
        )


def ensure_schema(engine: Engine, where: str) -> None:
    """Create the schema in an empty database or upgrade an older one; refuse anything else."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_KEY})
        if _current(conn, where) == head():
            return
        _upgrade(conn, "head")


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring an empty or older database to ``revision`` exactly (used to build test assets)."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        _upgrade(conn, revision)


def _upgrade(conn: Connection, revision: str) -> None:
    from alembic import command

    config = _config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
