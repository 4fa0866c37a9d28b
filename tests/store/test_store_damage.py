"""A damaged database is never written, and every damage gets its true name.

The damage is real: a page in the middle of a recorded file overwritten with random bytes, a
schema revision table emptied or dropped, a file locked by another process.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from store_records import sample_flow, sample_modules

from tracer.store import SchemaError, StoreError, health, open_store
from tracer.store.errors import DamagedError
from tracer.store.migrate import upgrade_to

TINY_PLUGIN = Path(__file__).parents[1] / "plugins" / "tiny_plugin.py"
TRACER = Path(sys.executable).with_name("tracer")


def recorded(path: Path, steps: int = 120) -> Path:
    """A database with one run of ``steps`` traced steps (a few hundred pages)."""
    with open_store(path) as store:
        run = store.create_run(name="kept")
        writer = store.writer(run.id)
        writer.begin(sample_modules(), [])
        for step in range(steps):
            writer.write_step(step, sample_flow(step), {"loss": 1.0 / (step + 1)})
        writer.end("completed")
    return path


def damage_page(path: Path, table: str = "tensors") -> int:
    """Overwrite a leaf page in the middle of ``table`` with random bytes; return its number."""
    with sqlite3.connect(path) as conn:
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    page = pages[len(pages) // 2]
    with path.open("r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(random.Random(page).randbytes(page_size))
    return page


def digest(path: Path) -> str:
    """The file's contents, to prove nothing was written."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_store_refuses_to_write_into_a_file_with_a_damaged_middle_page(tmp_path: Path) -> None:
    path = recorded(tmp_path / "d.db")
    damage_page(path)
    before = digest(path)
    with open_store(path) as store:
        assert [r.name for r in store.list_runs()] == ["kept"]  # reading still works
        with pytest.raises(DamagedError, match=r"d\.db is damaged .*tracer db check"):
            store.create_run(name="new")
        with pytest.raises(DamagedError):  # known damaged: refused again without a new check
            store.create_run(name="again")
    assert digest(path) == before


def test_tracer_run_into_a_damaged_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = recorded(tmp_path / "d.db")
    damage_page(path)
    before = digest(path)
    done = subprocess.run(
        [TRACER, "run", "tiny", "--plugin", TINY_PLUGIN, "--db", path],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is damaged" in errors[0], done.stderr
    assert digest(path) == before


def test_big_file_gets_the_cheap_check_and_a_damaged_runs_table_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "FULL_CHECK_MAX_BYTES", 0)  # every file counts as big
    path = recorded(tmp_path / "d.db", steps=3)
    with sqlite3.connect(path) as conn:
        for i in range(200):  # enough runs for the runs table to span several pages
            conn.execute("INSERT INTO runs (name, status, started_at, updated_at, config, tags, "
                         "notes, last_metrics, rank, world_size, step_count) "
                         "VALUES (?, 'completed', 0, 0, '{}', '{}', '[]', '{}', 0, 1, 0)",
                         (f"run-{i}-" + "x" * 100,))  # fmt: skip
    conn.close()
    damage_page(path, "runs")
    before = digest(path)
    with open_store(path) as store, pytest.raises(DamagedError, match="is damaged"):
        store.create_run(name="new")
    assert digest(path) == before


def test_a_write_that_meets_damage_marks_the_store_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "FULL_CHECK_MAX_BYTES", 0)  # the cheap check misses tensors
    path = recorded(tmp_path / "d.db")
    damage_page(path)
    with open_store(path) as store:
        run = store.create_run(name="new")  # the damage is not where the cheap check looks
        with pytest.raises(DamagedError, match="malformed"):
            for step in store.steps(1):
                store.flow(1, step)
        assert store.damaged is not None
        with pytest.raises(DamagedError):
            store.writer(run.id).write_step(0, sample_flow(0))
        with pytest.raises(DamagedError):
            store.finish_run(run.id, "completed")


def test_health_finds_a_damaged_page_with_the_full_check(tmp_path: Path) -> None:
    path = recorded(tmp_path / "ok.db", steps=5)
    assert health.problems(path) == []
    assert health.problems(path, full=False) == []
    damage_page(path)
    assert health.problems(path) != []


def _emptied(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM alembic_version")
    conn.close()


def _dropped(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE alembic_version")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_emptied, r"has no schema revision \(its alembic_version table is empty\): the "
         "database is damaged, or was not made by layer-tracer"),
        (_dropped, r"has a runs table but no schema revision \(its alembic_version table is "
         r"missing\): the database is damaged, or was not made by layer-tracer"),
    ],
)  # fmt: skip
def test_open_store_names_a_missing_schema_revision(
    make: object, message: str, tmp_path: Path
) -> None:
    path = recorded(tmp_path / "r.db", steps=1)
    make(path)  # type: ignore[operator]
    before = digest(path)
    with pytest.raises(SchemaError, match=message) as caught:
        open_store(path)
    assert "newer" not in str(caught.value)
    assert digest(path) == before


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM alembic_version", "alembic_version table is empty"),
        ("DROP TABLE alembic_version", "alembic_version table is missing"),
    ],
)
def test_open_store_names_a_missing_schema_revision_on_postgres(
    postgres_url: str, sql: str, message: str
) -> None:
    open_store(postgres_url).close()
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()
    with pytest.raises(SchemaError, match=message):
        open_store(postgres_url)


def test_a_locked_database_says_so(tmp_path: Path) -> None:
    path = recorded(tmp_path / "l.db", steps=1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the file for writing
    try:
        code = (
            "from tracer.store import open_store\n"
            f"s = open_store({str(path)!r})\n"
            "s.create_run(name='x')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60,
            env={"TRACER_DB_TIMEOUT": "1", "PATH": ""},
        )  # fmt: skip
    finally:
        holder.close()
    last = done.stderr.strip().splitlines()[-1]
    assert "locked by another process" in last and "1 s" in last, done.stderr


def test_a_directory_and_a_foreign_file_get_their_names(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory, not a database file"):
        open_store(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("hello " * 1000)
    with pytest.raises(SchemaError, match="is not a SQLite database"):
        open_store(other)


def test_an_upgrade_never_writes_into_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade_to(engine, "0002")
    with engine.begin() as conn:
        for i in range(300):
            conn.exec_driver_sql(
                "INSERT INTO metrics (run_id, step, name, value, special) VALUES (1, ?, ?, 1, 0)",
                (i, "m" * 150),
            )
    engine.dispose()
    damage_page(path, "metrics")
    before = digest(path)
    with pytest.raises(DamagedError, match="is damaged"):
        open_store(path)
    assert digest(path) == before
