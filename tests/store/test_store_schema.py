"""Schema versioning: creation, upgrade of a first-schema file, refusal of foreign databases."""

from __future__ import annotations

import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from tracer.store import SchemaError, StoreError, open_store
from tracer.store.migrate import REVISIONS, head, script_revisions
from tracer.store.schema import Base

ASSET = Path(__file__).with_name("assets") / "first_schema.db"


def revision_of(path: Path) -> list[str]:
    """The alembic revision recorded in a SQLite file."""
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    """Bytes, mtime and sibling files of a database file, to prove it was not touched."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def test_known_revisions_match_the_migration_scripts() -> None:
    assert script_revisions() == REVISIONS


def test_open_store_creates_schema_at_head(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path).close()
    assert revision_of(path) == [head()]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_match_the_orm_models(db_url: str) -> None:
    open_store(db_url).close()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_open_store_upgrades_a_first_schema_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(ASSET, path)
    assert revision_of(path) == ["0001"]
    with open_store(path) as store:
        run = store.get_run("old-run")
        assert (run.status, dict(run.config), run.steps) == ("completed", {"hidden_dim": 64}, 2)
        assert store.steps(run.id) == [0, 5]
        assert store.series(run.id, "fc", stat="max") == [(0, math.inf), (5, math.inf)]
        assert store.series(run.id, "fc", stat="mean") == [(0, 0.1), (5, pytest.approx(0.6))]
        assert store.module_tree(run.id)[1].parameters[0].shape == (2, 3)
        assert [m.value for m in store.metrics(run.id)] == [1.0, 1 / 6]
    assert revision_of(path) == [head()]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM extra_stats").fetchone() == (0,)


def test_upgraded_database_accepts_new_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(ASSET, path)
    open_store(path).close()
    with open_store(path) as store:
        run = store.create_run(name="new")
        assert [r.name for r in store.list_runs()] == ["new", "old-run"]
        assert run.id == 2


def _newer_db(path: Path) -> None:
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")


def _foreign_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.close()


def _corrupt_db(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _corrupt_sqlite_body(path: Path) -> None:
    _foreign_db(path)
    data = bytearray(path.read_bytes())
    data[100:] = os.urandom(len(data) - 100)  # keep the header, wreck the pages
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_newer_db, "schema revision 9999_future.*upgrade layer-tracer"),
        (_foreign_db, "not a layer-tracer database.*invoices"),
        (_corrupt_db, "not a SQLite database"),
        (_corrupt_sqlite_body, "damaged|not a layer-tracer"),
    ],
)
def test_open_store_refuses_without_modifying(make, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.db"
    make(path)
    before = snapshot(path)
    with pytest.raises(SchemaError, match=message):
        open_store(path)
    assert snapshot(path) == before


def test_open_store_refuses_foreign_postgres_database(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id integer primary key)")
    with pytest.raises(SchemaError, match="not a layer-tracer database"):
        open_store(postgres_url)
    with engine.connect() as conn:
        tables = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        ]
    engine.dispose()
    assert tables == ["invoices"]


def test_open_store_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nowhere" / "x.db")


def test_open_store_bad_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError):
        open_store("nosuchdialect://x/y")


def test_open_store_defaults_to_tracer_db_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACER_DB", str(tmp_path / "env.db"))
    open_store().close()
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("TRACER_DB")
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        assert store.where == str(tmp_path / "tracer.db")


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    with open_store(tmp_path / "p.db") as store, store.reading() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}


def test_sqlite_writes_take_the_write_lock_up_front(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    with open_store(path) as store, store.writing():
        other = sqlite3.connect(path, timeout=0)
        # BEGIN IMMEDIATE already holds the write lock, so a second writer cannot start
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_open_store_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(StoreError, match="cannot open"):
            open_store(f"postgresql+psycopg://nobody@127.0.0.1:{port}/x")


def test_opening_an_up_to_date_store_does_not_import_alembic(tmp_path: Path) -> None:
    path = tmp_path / "fast.db"
    open_store(path).close()
    code = (
        f"import sys\nfrom tracer.store import open_store\nopen_store({str(path)!r}).list_runs()\n"
    )
    code += "print('alembic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
