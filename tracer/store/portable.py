"""Moving a run between databases and machines: a JSON-lines file, strict JSON, NaN-safe.

Line 1 is a header ``{"format": "layer-tracer-run", "version": 1}``; then one ``run`` line (its
provenance), one ``modules`` line, one ``step`` line per traced step (its calls with their
tensors) and one ``metrics`` line per logged step. Non-finite floats are written as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` in statistics and metrics (and read back as
floats), so any JSON reader can load the file; a non-finite value inside a config comes back as
that string.

An export reads one snapshot of the run (a run still being written is exported as it stood at
one instant) and replaces the target file only once it is complete. An import checks the whole
file first (:mod:`tracer.store.validate`), then writes the run in one transaction: a file that
is refused, an import that fails, is interrupted or killed, leaves the database as it was.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from tracer.records import CallRecord, ModuleRecord, RunInfo
from tracer.store import queries
from tracer.store.errors import RunNotFound, StoreError
from tracer.store.validate import (
    FORMAT,
    RUN_FIELDS,
    VERSION,
    MetricsLine,
    ModulesLine,
    RunLine,
    StepLine,
    check_export,
    read_export,
)
from tracer.store.writer import RUNS, insert_metrics, insert_modules, insert_step, run_values

if TYPE_CHECKING:
    from tracer.store.store import Store

__all__ = ["FORMAT", "VERSION", "DuplicateRun", "export_run", "import_run", "same_origin"]

#: Any constant key: imports into one PostgreSQL database take turns on it (duplicate check).
_IMPORT_LOCK = 0x7472_6163_6572  # "tracer"


class DuplicateRun(StoreError):
    """The database already holds the run being imported (same origin)."""


def _safe(value: Any) -> Any:
    """Replace non-finite floats (anywhere inside lists and dicts) with their string names."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def _plain(record: Any) -> dict[str, Any]:
    # dataclasses.asdict would deep-copy (and fail on) the read-only stats mappings
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _call_dict(call: CallRecord) -> dict[str, Any]:
    data = _plain(call)
    for key in ("inputs", "outputs", "grads"):
        data[key] = [{**_plain(t), "stats": dict(t.stats)} for t in data[key]]
    return data


def _module_dict(module: ModuleRecord) -> dict[str, Any]:
    return {**_plain(module), "parameters": [_plain(p) for p in module.parameters]}


@contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """One read transaction that sees a single state of the database, on every backend."""
    try:
        conn = store.engine.connect()
        if store.engine.dialect.name == "postgresql":
            # READ COMMITTED (the default) would let each query see newer steps
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn, conn.begin():
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"read from {store.where} failed: {exc.__class__.__name__}") from None


def _run_info(store: Store, conn: Connection, run_id: int) -> RunInfo:
    row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id} in {store.where}")
    return queries.run_info(row, now=time.time(), stale_after_s=store.stale_after_s)


def _lines(store: Store, conn: Connection, run_id: int) -> Iterator[dict[str, Any]]:
    run = _run_info(store, conn, run_id)
    yield {"format": FORMAT, "version": VERSION}
    fields = {k: getattr(run, k) for k in RUN_FIELDS}
    fields.update(config=dict(run.config), tags=dict(run.tags), notes=list(run.notes))
    yield {"type": "run", **fields}
    modules = [_module_dict(m) for m in queries.module_tree(conn, run_id)]
    yield {"type": "modules", "modules": modules}
    for step in queries.steps(conn, run_id):
        calls = [_call_dict(c) for c in queries.flow(conn, run_id, step)]
        yield {"type": "step", "step": step, "calls": calls}
    for step, group in groupby(queries.metrics(conn, run_id), key=lambda m: m.step):
        yield {"type": "metrics", "step": step, "values": {m.name: m.value for m in group}}


@contextmanager
def replaced_on_success(path: Path) -> Iterator[IO[str]]:
    """A text file that becomes ``path`` only once written completely (else it is removed)."""
    if path.is_dir():
        raise StoreError(f"cannot write {path}: it is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"cannot write {path}: permission denied")
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        fh = part.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {_reason(exc, path)}") from None
    try:
        with fh:
            yield fh
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {_reason(exc, path)}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _reason(exc: OSError, path: Path) -> str:
    if isinstance(exc, FileNotFoundError) and not path.parent.is_dir():
        return f"the directory {path.parent} does not exist"
    return (exc.strerror or str(exc)).lower()


def export_run(store: Store, run_id: int, path: Path) -> None:
    """Write run ``run_id`` of ``store`` to ``path`` as JSON lines (one snapshot of it)."""
    with _snapshot(store) as conn:
        _run_info(store, conn, run_id)  # a missing run is an error before any file is made
        with replaced_on_success(path) as fh:
            for line in _lines(store, conn, run_id):
                fh.write(json.dumps(_safe(line), allow_nan=False) + "\n")


def same_origin(conn: Connection, run: RunLine) -> int | None:
    """The id of a run with the same origin (host, pid, start time, name, rank), if any."""
    query = select(RUNS.c.id).order_by(RUNS.c.id).limit(1)
    for name in ("host", "pid", "started_at", "name", "rank"):
        value = run.values[name]
        column = RUNS.c[name]
        query = query.where(column.is_(None) if value is None else column == value)
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


def import_run(store: Store, path: Path, *, as_new: bool = False, checked: bool = False) -> RunInfo:
    """Read a file written by :func:`export_run` into ``store`` as a new run; return its RunInfo.

    The whole file is checked before anything is written (ImportRefused names the line and
    the field); then the run is written in one transaction. A run the database already holds
    (same origin) is refused with DuplicateRun unless ``as_new``. ``checked``: the caller has
    just run :func:`check_export` on the file (the writing pass checks it again all the same).
    """
    if not checked:
        check_export(path)
    with store.writing() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})
        run_id = _write(conn, path, as_new=as_new)
    return store.get_run(run_id)


def _write(conn: Connection, path: Path, *, as_new: bool) -> int:
    """Insert the run and its records (a second reading of the checked file)."""
    lines = read_export(path)
    run = next(lines)
    assert isinstance(run, RunLine)
    if not as_new:
        found = same_origin(conn, run)
        if found is not None:
            raise DuplicateRun(
                f"run {found} already holds this run (same origin: host, pid, start time, "
                "name, rank); use --as-new to import a copy"
            )
    values = dict(run.values)
    if values["status"] == "running":
        values["status"] = "interrupted"  # nothing will ever write into the copy
    encoded = run_values(**values, last_metrics={})
    run_id = int(conn.execute(insert(RUNS).values(**encoded).returning(RUNS.c.id)).scalar_one())
    steps = 0
    for item in lines:
        if isinstance(item, ModulesLine):
            insert_modules(conn, run_id, item.modules)
        elif isinstance(item, StepLine):
            insert_step(conn, run_id, item.step, item.calls)
            steps += 1
        elif isinstance(item, MetricsLine):
            insert_metrics(conn, run_id, item.step, item.values)
    # the inserts above bumped updated_at: restore the exported one
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(step_count=steps, updated_at=values["updated_at"])
    )
    return run_id
