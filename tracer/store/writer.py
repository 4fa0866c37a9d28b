"""The run writer: the Sink a trace sends its records to, one transaction per traced step."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, delete, select, update

from tracer.records import CallRecord, ModuleRecord
from tracer.store import rows
from tracer.store.errors import LimitError, StoreError
from tracer.store.floats import encode
from tracer.store.limits import LIMITS, ColumnLimit, SeenStrings, check_int, check_values
from tracer.store.schema import Base, MetricRow, ModuleRow, RunRow

if TYPE_CHECKING:
    from tracer.store.store import Store

RUNS: Table = RunRow.__table__  # type: ignore[assignment]
MODULES: Table = ModuleRow.__table__  # type: ignore[assignment]
METRICS: Table = MetricRow.__table__  # type: ignore[assignment]


#: The hot tables of a step, with the layout of their row tuples (tracer.store.rows).
STEP_TABLES = (
    ("calls", rows.CALL_COLUMNS),
    ("tensors", rows.TENSOR_COLUMNS),
    ("extra_stats", rows.EXTRA_COLUMNS),
)
#: Tables the planner must have looked at once they hold rows: a step's foreign-key checks
#: (tensors -> calls, extra_stats -> tensors) run 9x slower on a table never analyzed.
ANALYZED = ("calls", "tensors")


def copy_available(conn: Connection) -> bool:
    """Whether ``conn`` writes a step by binary COPY (PostgreSQL through psycopg 3)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def _insert_sql(conn: Connection, table: str, columns: Sequence[str]) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def _executemany(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    # straight to the driver: the rows are already tuples in column order (benchmarks/README.md)
    if rows:
        conn.exec_driver_sql(_insert_sql(conn, table, columns), rows)


@cache
def _int_columns(
    table: str, columns: tuple[str, ...]
) -> tuple[tuple[int, ColumnLimit, tuple[int, int], bool], ...]:
    """(position, limit, range, nullable) of each integer column of rows laid out as ``columns``."""
    found = Base.metadata.tables[table].columns
    return tuple(
        (i, limit, limit.int_range, bool(found[name].nullable))
        for i, name in enumerate(columns)
        if (limit := LIMITS[table][name]).int_range is not None
    )


def check_int_columns(table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    """Refuse (LimitError) row tuples with an integer outside its column's range.

    PostgreSQL's binary COPY would wrap such a value around instead of refusing it, and SQLite
    would store it where PostgreSQL cannot: so every backend checks, before writing.
    """
    if not rows:
        return
    for i, limit, bounds, nullable in _int_columns(table, tuple(columns)):
        values = map(itemgetter(i), rows)
        column = [v for v in values if v is not None] if nullable else list(values)
        try:
            check_int(limit.label, min(column, default=0), bounds, limit.field)
            check_int(limit.label, max(column, default=0), bounds, limit.field)
        except TypeError:  # a value that does not compare with integers
            kinds = ", ".join(sorted({type(v).__name__ for v in column}))
            message = f"{limit.field} holds a value that is not an integer ({kinds})"
            raise LimitError(message) from None


def insert_step(
    conn: Connection,
    run_id: int,
    step: int,
    calls: Sequence[CallRecord],
    seen: SeenStrings | None = None,
    *,
    copy: bool | None = None,
) -> None:
    """Insert one step's calls, tensors and extra statistics.

    Every value is checked against its column first (LimitError), ``seen`` remembering the
    strings already checked in earlier steps. PostgreSQL (psycopg 3) takes the rows by binary
    COPY, other backends by executemany; ``copy=False`` forces executemany (for comparisons).
    """
    LIMITS["calls"]["step"].check(step)
    step_rows = rows.step_rows(run_id, step, calls)
    seen = seen if seen is not None else SeenStrings()
    for (table, columns), table_rows in zip(STEP_TABLES, step_rows, strict=True):
        seen.check_rows(table, columns, table_rows)
        check_int_columns(table, columns, table_rows)
    write = _executemany
    if copy is None:
        copy = copy_available(conn)
    if copy:
        from tracer.store import pgcopy  # PostgreSQL only: SQLite never loads its dialect

        write = pgcopy.copy_rows
    # calls first: the tensors' foreign key points at them
    for (table, columns), table_rows in zip(STEP_TABLES, step_rows, strict=True):
        write(conn, table, columns, table_rows)


def analyze_unknown(conn: Connection) -> list[str]:
    """ANALYZE the step tables PostgreSQL's planner believes empty; return their names.

    Without statistics the foreign-key check of each tensor row scans its step's calls
    through the wrong index, several times slower (benchmarks/README.md, PostgreSQL).
    """
    if conn.dialect.name != "postgresql":
        return []
    unknown = [
        table
        for table in ANALYZED
        if conn.exec_driver_sql(
            f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass"
        ).scalar_one()
        <= 0
    ]
    for table in unknown:
        conn.exec_driver_sql(f"ANALYZE {table}")
    return unknown


def insert_modules(conn: Connection, run_id: int, modules: Sequence[ModuleRecord]) -> None:
    """Replace the run's module table with ``modules`` (named_modules() order)."""
    module_rows = [rows.module_row(run_id, i, m) for i, m in enumerate(modules)]
    for row in module_rows:
        check_values("modules", row)
    conn.execute(delete(MODULES).where(MODULES.c.run_id == run_id))
    if module_rows:
        conn.execute(MODULES.insert(), module_rows)


def insert_metrics(
    conn: Connection,
    run_id: int,
    step: int,
    metrics: Mapping[str, float],
    seen: SeenStrings | None = None,
) -> None:
    """Insert one step's metrics and fold them into the run's ``last_metrics``."""
    if not metrics:
        return
    LIMITS["metrics"]["step"].check(step)
    (seen if seen is not None else SeenStrings()).check_strings("metrics", "name", metrics)
    values = {name: float(value) for name, value in metrics.items()}
    params = []
    for name, value in values.items():
        column, special = encode(value)
        params.append(
            {"run_id": run_id, "step": step, "name": name, "value": column, "special": special}
        )
    conn.execute(METRICS.insert(), params)
    last = conn.execute(
        RUNS.select().with_only_columns(RUNS.c.last_metrics).where(RUNS.c.id == run_id)
    ).scalar_one()
    merged = {**json.loads(last), **values}
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(last_metrics=json.dumps(merged), updated_at=time.time())
    )


class RunWriter:
    """A :class:`tracer.sink.Sink` writing into one run of a store."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        #: None: binary COPY where the backend has it; False: executemany (benchmarks compare).
        self.copy: bool | None = None
        #: Whether the next traced step written is followed by :func:`analyze_unknown` (then
        #: cleared: once per writer is enough for PostgreSQL's planner).
        self.analyze = True
        self._seen = SeenStrings()

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None:
        """Store the model's modules and the trace's notes."""
        with self.store.writing() as conn:
            insert_modules(conn, self.run_id, modules)
            conn.execute(
                update(RUNS)
                .where(RUNS.c.id == self.run_id)
                .values(notes=json.dumps(list(notes)), updated_at=time.time())
            )

    def add_notes(self, notes: Sequence[str]) -> None:
        """Append notes learnt while tracing (a statistic skipped, and why) to the run's."""
        if not notes:
            return
        with self.store.writing() as conn:
            where = RUNS.c.id == self.run_id
            current = conn.execute(select(RUNS.c.notes).where(where)).scalar_one()
            merged = [*json.loads(current or "[]"), *notes]
            conn.execute(update(RUNS).where(where).values(notes=json.dumps(merged)))

    def write_step(
        self,
        step: int,
        calls: Sequence[CallRecord],
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Write one traced step, and the metrics logged in it, in one transaction."""
        if not calls and not metrics:
            return  # nothing traced in this step: no rows, and not counted as a traced step
        with self.store.writing() as conn:
            if calls:
                insert_step(conn, self.run_id, step, calls, self._seen, copy=self.copy)
                conn.execute(
                    update(RUNS)
                    .where(RUNS.c.id == self.run_id)
                    .values(step_count=RUNS.c.step_count + 1, updated_at=time.time())
                )
            if metrics:
                insert_metrics(conn, self.run_id, step, metrics, self._seen)
        if calls and self.analyze:
            self.analyze = False
            self._analyze()

    def _analyze(self) -> None:
        """Once per writer, after its first step: give PostgreSQL's planner the statistics it
        lacks (SQLite plans these writes well without any)."""
        if self.store.engine.dialect.name != "postgresql":
            return
        # the step is committed: a failure here must not report it lost (the next write will
        # meet the same server and say what is wrong)
        with contextlib.suppress(StoreError), self.store.writing() as conn:
            analyze_unknown(conn)

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write scalar metrics logged at ``step``."""
        with self.store.writing() as conn:
            insert_metrics(conn, self.run_id, step, metrics, self._seen)

    def end(self, status: str, error: str | None = None) -> None:
        """Finish the run with ``status`` (completed / failed / interrupted)."""
        self.store.finish_run(self.run_id, status, error)


def run_values(**values: Any) -> dict[str, Any]:
    """Encode the JSON columns of a ``runs`` row (config, tags, notes, last metrics)."""
    for key in ("config", "tags", "last_metrics"):
        if key in values:
            values[key] = json.dumps(dict(values[key] or {}), default=str)
    if "notes" in values:
        values["notes"] = json.dumps(list(values["notes"] or ()))
    return values
