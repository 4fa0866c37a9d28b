"""The run writer: the Sink a trace sends its records to, one transaction per traced step."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, delete, select, update

from tracer.records import CallRecord, ModuleRecord
from tracer.store import rows
from tracer.store.floats import encode
from tracer.store.limits import LIMITS, SeenStrings, check_values
from tracer.store.schema import MetricRow, ModuleRow, RunRow

if TYPE_CHECKING:
    from tracer.store.store import Store

RUNS: Table = RunRow.__table__  # type: ignore[assignment]
MODULES: Table = ModuleRow.__table__  # type: ignore[assignment]
METRICS: Table = MetricRow.__table__  # type: ignore[assignment]


def _insert_sql(conn: Connection, table: str, columns: Sequence[str]) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def insert_step(
    conn: Connection,
    run_id: int,
    step: int,
    calls: Sequence[CallRecord],
    seen: SeenStrings | None = None,
) -> None:
    """Insert one step's calls, tensors and extra statistics as plain executemany batches.

    Every value is checked against its column first (LimitError), ``seen`` remembering the
    strings already checked in earlier steps.
    """
    LIMITS["calls"]["step"].check(step)
    call_rows, tensor_rows, extra_rows = rows.step_rows(run_id, step, calls)
    seen = seen if seen is not None else SeenStrings()
    seen.check_rows("calls", rows.CALL_COLUMNS, call_rows)
    seen.check_rows("tensors", rows.TENSOR_COLUMNS, tensor_rows)
    seen.check_rows("extra_stats", rows.EXTRA_COLUMNS, extra_rows)
    # straight to the driver: the rows are already tuples in column order (benchmarks/README.md)
    if call_rows:
        conn.exec_driver_sql(_insert_sql(conn, "calls", rows.CALL_COLUMNS), call_rows)
    if tensor_rows:
        conn.exec_driver_sql(_insert_sql(conn, "tensors", rows.TENSOR_COLUMNS), tensor_rows)
    if extra_rows:
        conn.exec_driver_sql(_insert_sql(conn, "extra_stats", rows.EXTRA_COLUMNS), extra_rows)


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
                insert_step(conn, self.run_id, step, calls, self._seen)
                conn.execute(
                    update(RUNS)
                    .where(RUNS.c.id == self.run_id)
                    .values(step_count=RUNS.c.step_count + 1, updated_at=time.time())
                )
            if metrics:
                insert_metrics(conn, self.run_id, step, metrics, self._seen)

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
