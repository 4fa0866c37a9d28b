"""Several processes on one database: concurrent writers, a reader, racing schema creation,
and a writer killed mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update
from store_records import sample_flow

from tracer.store import open_store
from tracer.store.migrate import head
from tracer.store.writer import RUNS

WORKER = str(Path(__file__).with_name("store_worker.py"))


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start store_worker.py with arguments."""
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str]) -> None:
    """Wait for a worker and fail with its stderr when it did not succeed."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith("ok"), err


@pytest.mark.slow
def test_two_sqlite_writers_and_a_reader_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    open_store(path).close()
    writers = [spawn("write", path, name, "4", "12") for name in ("w1", "w2")]
    reader = spawn("read", path, "3")
    for proc in [*writers, reader]:
        finish(proc)
    with open_store(path) as store:
        runs = store.list_runs()
        assert sorted(r.name for r in runs) == ["w1"] * 4 + ["w2"] * 4
        for run in runs:
            assert run.status == "completed" and run.steps == 12
            assert store.steps(run.id) == list(range(12))
            assert store.flow(run.id, 11) == sample_flow(11)
            assert len(store.metrics(run.id)) == 12


def test_processes_opening_a_fresh_database_create_the_schema_once(db_url: str) -> None:
    start = str(time.time() + 2.0)  # after every interpreter has started
    for proc in [spawn("open", db_url, start) for _ in range(3)]:
        finish(proc)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert list(conn.exec_driver_sql("SELECT version_num FROM alembic_version")) == [(head(),)]
    engine.dispose()


def test_killed_writer_is_interrupted_and_its_steps_intact(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.db")
    open_store(path).close()
    proc = spawn("forever", path, "doomed")
    assert proc.stdout is not None
    written = [int(proc.stdout.readline()) for _ in range(6)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with open_store(path) as store:
        run = store.get_run("doomed")
        assert run.status == "interrupted"
        assert [r.status for r in store.list_runs(status="interrupted")] == ["interrupted"]
        assert store.list_runs(status="running") == []
        steps = store.steps(run.id)
        assert steps[: len(written)] == written and run.steps == len(steps)
        for step in steps:
            assert store.flow(run.id, step) == sample_flow(step, scale=1.0 + step)


def test_run_on_other_host_is_interrupted_after_silence(tmp_path: Path) -> None:
    path = str(tmp_path / "remote.db")
    with open_store(path, stale_after_s=60) as store:
        quiet = store.create_run(name="quiet")
        busy = store.create_run(name="busy")
        with store.writing() as conn:
            conn.execute(update(RUNS).values(host="elsewhere", pid=1))
            conn.execute(
                update(RUNS).where(RUNS.c.id == quiet.id).values(updated_at=time.time() - 61)
            )
        assert store.get_run(quiet.id).status == "interrupted"
        assert store.get_run(busy.id).status == "running"
        store.writer(quiet.id).write_metrics(1, {"loss": 0.1})  # a write is a heartbeat
        assert store.get_run(quiet.id).status == "running"


def test_store_opened_twice_in_one_process_sees_other_processes_writes(tmp_path: Path) -> None:
    # Opening a database a second time must not drop the first store's SQLite locks (closing
    # any descriptor of the file would), or a writer process deletes the WAL under it.
    path = str(tmp_path / "twice.db")
    first = open_store(path)
    assert first.list_runs() == []
    second = open_store(path)
    finish(spawn("write", path, "other", "1", "3"))
    runs = first.list_runs()
    assert [(r.name, r.steps) for r in runs] == [("other", 3)]
    assert first.flow(runs[0].id, 2) == sample_flow(2)
    first.close()
    second.close()
