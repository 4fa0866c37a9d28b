"""Schema versioning: refuse databases we must not touch, create or upgrade the rest (Alembic).

Every check happens before anything is written: a SQLite file is inspected through a plain
read-only connection before the store's engine (which switches the file to WAL) ever opens it.
Creation and upgrade run inside one write transaction that first takes a lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so processes that open a
fresh database at the same time create the schema exactly once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

import tracer
from tracer.store.engine import WRITE_OPTION
from tracer.store.errors import SchemaError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Every revision in migrations/versions, oldest first. Spelled out so that opening an up-to-date
#: database never imports Alembic (a third of a second); a test checks it against the scripts.
REVISIONS: tuple[str, ...] = ("0001", "0002")
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
    if "alembic_version" not in tables or "runs" not in tables:
        shown = ", ".join(sorted(tables)[:8])
        raise SchemaError(f"{where} is not a layer-tracer database (it has tables: {shown})")
    if len(revision) != 1 or revision[0] not in REVISIONS:
        found = ", ".join(revision) or "none"
        raise SchemaError(
            f"{where} has schema revision {found}, which this layer-tracer "
            f"{tracer.__version__} does not know (newest known: {head()}); it was probably "
            "written by a newer layer-tracer: upgrade layer-tracer to open it"
        )
    return revision[0]


def precheck_sqlite_file(path: Path) -> None:
    """Refuse a file that is not a SQLite database or not ours, without modifying it."""
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"cannot create {path}: directory {path.parent} does not exist")
        return
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    if path.stat().st_size == 0:
        return  # an empty file is a fresh database to SQLite
    # No open()/close() of the file here: closing any descriptor of a SQLite file drops every
    # POSIX lock this process holds on it, which would silently break other open stores.
    # SQLite's own connections share lock state per inode, so asking sqlite3 is safe.
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA query_only=1")
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            revision = []
            if "alembic_version" in tables:
                revision = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "file is not a database" in str(exc):
            raise SchemaError(
                f"{path} is not a SQLite database (corrupt or another kind of file)"
            ) from None
        raise SchemaError(f"{path} is a corrupt SQLite database: {exc}") from None
    classify(tables, revision, str(path))


def _current(conn: Connection, where: str) -> str | None:
    tables = inspect(conn).get_table_names()
    revision: list[str] = []
    if "alembic_version" in tables:
        revision = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return classify(tables, revision, where)


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
