"""PostgreSQL takes a traced step by binary COPY: the same records back as SQLite gives, the same
refusals (integers out of range included, which binary COPY itself would wrap around), one
transaction per step even when the writer is killed in the middle of one.

Run as a script (``python test_pg_copy.py URL CALLS``) this file is the writer that the kill test
starts: it writes steps of CALLS calls until killed, printing each step once committed.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).parent))

from store_records import sample_flow, sample_modules, tensor

from tracer.records import CallRecord, TensorRecord, frozen_mapping
from tracer.store import LimitError, Store, StoreError, open_store
from tracer.store.pgcopy import binary_type, layout
from tracer.store.schema import Base
from tracer.store.writer import STEP_TABLES, analyze_unknown

pytestmark = pytest.mark.postgres

#: Text that a text COPY would have to escape, and text beyond ASCII: all stored as given.
AWKWARD = ("tab\there", "line\nbreak\r\n", "back\\slash \\N", "quote ' \" ,;|", "ünï 模块 🚀")
#: The calls of one step the kill test writes (an input, an output and a gradient each).
KILL_CALLS = 5000


def plain(value: Any) -> Any:
    """Records as nested plain values, NaN as a string (NaN is unequal to itself)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(plain(getattr(value, f.name)) for f in fields(value)))
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return value


def awkward_flow(step: int) -> list[CallRecord]:
    """A step with NaN, +-Inf, absent and extra statistics, empty shapes, awkward strings."""
    odd = tensor(mean=math.nan, min=-math.inf, max=math.inf, kurtosis=math.nan, spread=-math.inf)
    partial = TensorRecord(
        "ids", (4, 5), "int64", "cpu", role="input", stats=frozen_mapping({"numel": 20.0})
    )
    scalar = tensor(AWKWARD[0], (), role="output", l2=math.inf)
    opaque = TensorRecord(AWKWARD[1], (), "", "", role="input", type_name=AWKWARD[2])
    calls = [
        CallRecord(step, 0, "", "Net", inputs=(partial, opaque), outputs=(odd,), duration_s=0.5),
        CallRecord(step, 1, AWKWARD[3], AWKWARD[4], outputs=(scalar,), depth=1),
        CallRecord(step, 2, AWKWARD[4], "Tensor.view", kind="op", op=AWKWARD[0], outputs=(odd,)),
    ]
    return [*calls, *(replace(call, seq=call.seq + 10) for call in sample_flow(step)[1:])]


def write(store: Store, flow: Sequence[CallRecord], *, copy: bool | None = None) -> int:
    """A new run holding ``flow`` as step ``flow[0].step``; its id."""
    run = store.create_run(name="copied")
    writer = store.writer(run.id)
    writer.copy = copy
    writer.begin(sample_modules(), [])
    writer.write_step(flow[0].step, flow, {"loss": math.nan})
    return run.id


def statements(url: str) -> list[str]:
    """The first words of every statement that wrote a step row, logged by triggers."""
    with _watch(url) as conn:
        return [row[0] for row in conn.execute(text("SELECT query FROM written ORDER BY n"))]


def log_writes(store: Store) -> None:
    """Triggers recording which statement (COPY or INSERT) wrote into each step table."""
    with store.writing() as conn:
        conn.exec_driver_sql("CREATE TABLE written (n serial, query text)")
        conn.exec_driver_sql(
            "CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO written (query) VALUES (TG_TABLE_NAME || ' ' || "
            "split_part(current_query(), ' ', 1)); RETURN NULL; END $$"
        )
        for table, _ in STEP_TABLES:
            conn.exec_driver_sql(
                f"CREATE TRIGGER log_{table} AFTER INSERT ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION log_write()"
            )


def test_copy_types_are_the_database_column_types(postgres_url: str) -> None:
    open_store(postgres_url).close()
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        found = {
            (table, column): udt
            for table, column, udt in conn.execute(
                text(
                    "SELECT table_name, column_name, udt_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
                )
            )
        }
    engine.dispose()
    derived = {
        (table.name, column.name): binary_type(column.type)
        for table in Base.metadata.tables.values()
        for column in table.columns
    }
    assert derived == found
    assert derived["modules", "params_own"] == "int8"  # BigInteger, Integer only on SQLite
    for table, columns in STEP_TABLES:
        plan = layout(table, columns)
        assert plan.types == tuple(found[table, column] for column in plan.columns)


def test_postgres_writes_a_step_by_copy_and_executemany_on_request(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        log_writes(store)
        write(store, awkward_flow(0))
        write(store, awkward_flow(0), copy=False)
    logged = statements(postgres_url)
    copied = ["calls COPY", "tensors COPY", "extra_stats COPY"]
    assert logged[:3] == copied
    assert set(logged[3:]) == {"calls INSERT", "tensors INSERT", "extra_stats INSERT"}


def test_a_copied_step_reads_back_as_the_same_step_written_to_sqlite(
    postgres_url: str, tmp_path: Path
) -> None:
    flow = awkward_flow(7)
    back = []
    for url in (f"sqlite:///{tmp_path / 'ref.db'}", postgres_url):
        with open_store(url) as store:
            run_id = write(store, flow)
            back.append((store.flow(run_id, 7), store.flows(run_id, [7]), store.metrics(run_id)))
    sqlite, postgres = back
    assert plain(postgres) == plain(sqlite)
    assert plain(postgres[0]) == plain(flow)  # and both are what was written


@pytest.mark.parametrize(
    "bad",
    [
        {"module": "nul\x00inside"},
        {"type": "lone \ud800 surrogate"},
        {"op": "x" * 101},
        {"slot": "nul\x00"},
        {"dtype": "float32\x00"},
    ],
    ids=["nul-module", "surrogate-type", "long-op", "nul-slot", "nul-dtype"],
)
def test_copy_refuses_what_every_backend_refuses_and_writes_nothing(
    postgres_url: str, tmp_path: Path, bad: dict[str, Any]
) -> None:
    flow = sample_flow(0)
    name, value = next(iter(bad.items()))
    if name in ("slot", "dtype"):
        out = replace(flow[1].outputs[0], **{name: value})
        flow[1] = replace(flow[1], outputs=(out,))
    else:
        flow[3] = replace(flow[3], **{name: value})
    errors = []
    for url in (f"sqlite:///{tmp_path / 'ref.db'}", postgres_url):
        with open_store(url) as store:
            run = store.create_run(name="refused")
            with pytest.raises(LimitError) as caught:
                store.writer(run.id).write_step(0, flow)
            assert store.steps(run.id) == [] and store.get_run(run.id).steps == 0
            errors.append(str(caught.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize(
    ("field", "value"),
    [("step", 2**31), ("seq", 2**31), ("call_index", 2**32 + 5), ("depth", -(2**31) - 1)],
)
def test_an_integer_out_of_range_is_refused_before_anything_is_written(
    postgres_url: str, field: str, value: int
) -> None:
    with open_store(postgres_url) as store:
        run = store.create_run(name="ranges")
        writer = store.writer(run.id)
        writer.write_step(0, sample_flow(0))
        flow = [replace(call, step=1) for call in sample_flow(1)]
        changes: dict[str, Any] = {field: value}
        flow[-1] = replace(flow[-1], **changes)
        with pytest.raises(LimitError, match=f"{value}.*outside the range"):
            writer.write_step(value if field == "step" else 1, flow)
        assert store.steps(run.id) == [0] and store.get_run(run.id).steps == 1
        engine = create_engine(postgres_url)
        with engine.begin() as conn:
            wrapped = conn.execute(text("SELECT count(*) FROM calls WHERE step <> 0")).scalar()
        engine.dispose()
        assert wrapped == 0


def test_integers_at_the_edge_of_the_range_are_stored_exactly(postgres_url: str) -> None:
    top, bottom = 2**31 - 1, -(2**31)
    flow = [CallRecord(top, top, "m", "Linear", call_index=bottom, depth=top, outputs=(tensor(),))]
    with open_store(postgres_url) as store:
        run_id = write(store, flow)
        (call,) = store.flow(run_id, top)
    assert (call.step, call.seq, call.call_index, call.depth) == (top, top, bottom, top)


@pytest.mark.parametrize(
    ("depth", "error"),
    [(1.5, r"calls\.depth cannot store 1\.5 \(float\)"), ("3", r"calls\.depth .* not an integer")],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_column(
    postgres_url: str, depth: Any, error: str
) -> None:
    flow = [CallRecord(0, 0, "m", "Linear", depth=depth, outputs=(tensor(),))]
    with open_store(postgres_url) as store:
        run = store.create_run(name="typed")
        with pytest.raises(LimitError, match=error):
            store.writer(run.id).write_step(0, flow)
        assert store.steps(run.id) == []


def test_rewriting_a_step_fails_cleanly_and_keeps_the_first(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        run = store.create_run(name="twice")
        writer = store.writer(run.id)
        writer.write_step(0, sample_flow(0))
        with pytest.raises(StoreError, match=r"duplicate key value.*pk_calls") as caught:
            writer.write_step(0, sample_flow(0, scale=2.0))
        assert "\n" not in str(caught.value)
        writer.write_step(1, sample_flow(1))  # the writer goes on
        assert store.steps(run.id) == [0, 1] and store.get_run(run.id).steps == 2
        assert plain(store.flow(run.id, 0)) == plain(sample_flow(0))


def test_the_first_step_gives_the_planner_statistics(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        with store.writing() as conn:
            sizes = "SELECT reltuples FROM pg_class WHERE relname IN ('calls', 'tensors')"
            assert [row[0] for row in conn.exec_driver_sql(sizes)] == [-1, -1]
        writer = store.writer(store.create_run(name="planned").id)
        writer.write_step(0, sample_flow(0))
        with store.writing() as conn:
            assert sorted(row[0] for row in conn.exec_driver_sql(sizes)) == [5, 14]
            assert analyze_unknown(conn) == []
        assert writer.analyze is False


def _copying_tensors(conn: Connection, name: str) -> int | None:
    """The server process of the connection called ``name`` while it runs ``COPY tensors``."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
        "AND state = 'active' AND query LIKE 'COPY tensors%'"
    )
    return conn.execute(text(query), {"name": name}).scalar()


def _watch(url: str) -> Connection:
    """A connection outside any transaction (pg_stat_activity is read afresh each time)."""
    return (
        create_engine(url, poolclass=NullPool)
        .connect()
        .execution_options(isolation_level="AUTOCOMMIT")
    )


def _backend_gone(url: str) -> bool:
    with _watch(url) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'doomed'"
        return conn.execute(text(query)).scalar() == 0


def test_a_server_ending_the_connection_mid_copy_fails_the_step_in_one_line(
    postgres_url: str,
) -> None:
    url = f"{postgres_url}?application_name=ended"
    with open_store(url) as store, _watch(postgres_url) as watch:
        run = store.create_run(name="ended")
        writer = store.writer(run.id)
        writer.write_step(0, _big_flow(0, KILL_CALLS))

        def end_the_copy() -> None:
            deadline = time.monotonic() + 60
            while (pid := _copying_tensors(watch, "ended")) is None:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.002)
            watch.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        ender = threading.Thread(target=end_the_copy)
        ender.start()
        with pytest.raises(StoreError, match=r"(ended|closed) the connection") as caught:
            writer.write_step(1, _big_flow(1, KILL_CALLS))
        ender.join()
        assert "\n" not in str(caught.value) and not isinstance(caught.value, LimitError)
        writer.write_step(2, _big_flow(2, KILL_CALLS))  # on a fresh connection
        assert store.steps(run.id) == [0, 2] and store.get_run(run.id).steps == 2


@pytest.mark.slow
def test_a_writer_killed_in_the_middle_of_a_copy_leaves_whole_steps(
    postgres_url: str, postgres_server: Any
) -> None:
    url = f"{postgres_url}?application_name=doomed"
    log = Path(postgres_server.base) / "server.log"
    proc = subprocess.Popen(
        [sys.executable, __file__, url, str(KILL_CALLS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        printed = [int(proc.stdout.readline()) for _ in range(2)]
        deadline = time.monotonic() + 60
        with _watch(postgres_url) as watch:
            while _copying_tensors(watch, "doomed") is None:
                assert time.monotonic() < deadline and proc.poll() is None, "the writer stopped"
                time.sleep(0.002)
            logged = log.stat().st_size
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not _backend_gone(postgres_url):
        assert time.monotonic() < deadline, "the killed writer's backend is still there"
        time.sleep(0.05)
    with log.open() as lines:
        lines.seek(logged)
        assert "unexpected EOF on client connection with an open transaction" in lines.read()
    with open_store(postgres_url) as store:
        run = store.get_run("doomed")
        steps = store.steps(run.id)
        assert steps == list(range(len(steps))) and len(steps) >= len(printed)
        assert run.steps == len(steps) and run.status == "interrupted"
        with store.reading() as conn:
            counts = conn.exec_driver_sql(
                "SELECT step, count(*) FROM tensors GROUP BY step ORDER BY step"
            ).all()
            calls = conn.exec_driver_sql("SELECT count(*) FROM calls").scalar()
    assert [tuple(row) for row in counts] == [(step, KILL_CALLS * 3) for step in steps]
    assert calls == KILL_CALLS * len(steps)


def _big_flow(step: int, calls: int) -> list[CallRecord]:
    out = tensor(scale=1.0 + step)
    return [
        CallRecord(
            step, seq, f"layers.{seq}", "Linear", inputs=(out,), outputs=(out,), grads=(out,)
        )
        for seq in range(calls)
    ]


def _write_until_killed(url: str, calls: int) -> None:
    """Write big steps until killed, printing each step once it is committed."""
    store = open_store(url)
    writer = store.writer(store.create_run(name="doomed").id)
    step = 0
    while True:
        writer.write_step(step, _big_flow(step, calls))
        print(step, flush=True)
        step += 1


if __name__ == "__main__":
    _write_until_killed(sys.argv[1], int(sys.argv[2]))
