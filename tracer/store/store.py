"""The Store: runs and their records in one database (SQLite file, in memory, or PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tracer.records import CallRecord, MetricRecord, ModuleRecord, RunInfo, RunStatus
from tracer.store import provenance, queries
from tracer.store.engine import (
    TIMEOUT_ENV,
    WRITE_OPTION,
    make_engine,
    resolve_url,
    sqlite_file,
    timeout_message,
    wait_timeout,
    watchdog_of,
)
from tracer.store.errors import (
    DamagedError,
    ReadOnlyError,
    RunNotFound,
    ServerTimeout,
    StoreError,
    server_meaning,
    sqlite_code,
    sqlite_meaning,
)
from tracer.store.limits import check_json_column, check_values, clip_text
from tracer.store.liveness import DEFAULT_STALE_AFTER_S
from tracer.store.migrate import (
    check_read_only_schema,
    ensure_schema,
    head,
    precheck_sqlite_file,
)
from tracer.store.schema import ERROR_CHARS
from tracer.store.writer import RUNS, RunWriter, run_values

if TYPE_CHECKING:
    from tracer.store.diff import FlowDiff
    from tracer.store.groups import GroupInfo

_STATUSES: tuple[str, ...] = get_args(RunStatus)


def open_store(
    url_or_path: str | os.PathLike[str] | None = None,
    *,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> Store:
    """Open (creating or upgrading when needed) the store at a path or SQLAlchemy URL.

    None means ``$TRACER_DB``, else ``./tracer.db``. ``stale_after_s``: a ``running`` run from
    another host with no write for this long is reported as ``interrupted``.
    """
    url = resolve_url(url_or_path)
    where = url.render_as_string(hide_password=True)
    path = sqlite_file(url)
    read_only: str | None = None  # why it cannot be written
    mode: str | None = None  # how SQLite opens it then
    if path is not None:
        found = precheck_sqlite_file(path)
        where = str(path)
        if found.read_only is not None:
            read_only, mode = found.why_read_only, found.read_only
        elif found.revision not in (None, head()):
            _refuse_damaged(path, where)  # an upgrade writes: never into a damaged file
    engine = make_engine(url, read_only=mode)
    watchdog = watchdog_of(engine)
    fired = watchdog.fired if watchdog is not None else 0
    try:
        if read_only is not None:
            check_read_only_schema(engine, where, read_only)
        else:
            ensure_schema(engine, where)
    except SQLAlchemyError as exc:
        engine.dispose()
        if watchdog is not None and watchdog.fired != fired:
            raise ServerTimeout(
                f"cannot open {where}: {timeout_message(where, watchdog.timeout_s)}"
            ) from None
        raise StoreError(f"cannot open {where}: {_reason(exc)}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, where, stale_after_s=stale_after_s, read_only=read_only, path=path)


def _reason(exc: SQLAlchemyError) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        if isinstance(exc.orig, sqlite3.Error):
            if sqlite_code(exc.orig) == "SQLITE_BUSY":
                return (
                    f"the database is locked by another process (waited {wait_timeout():g} s; "
                    f"{TIMEOUT_ENV} sets how long)"
                )
            return sqlite_meaning(exc.orig)
        return server_meaning(str(exc.orig))
    return server_meaning(str(exc))


def _connect_timed_out(exc: SQLAlchemyError) -> bool:
    return "timeout expired" in str(exc)


def _damaged_message(where: str, found: list[str]) -> str:
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (
        f"{where} is damaged ({found[0]}{more}): layer-tracer does not write into it; "
        f"`tracer db check --db {where}` lists the damage"
    )


def _refuse_damaged(path: Path, where: str, mode: str = "ro") -> None:
    from tracer.store import health

    found = health.problems(path, mode=mode)
    if found:
        raise DamagedError(_damaged_message(where, found))


class Store:
    """Runs, their traced steps, modules and metrics; every method returns frozen records."""

    def __init__(
        self,
        engine: Engine,
        where: str,
        *,
        stale_after_s: float,
        read_only: str | None = None,
        path: Path | None = None,
    ) -> None:
        self.engine = engine
        self.where = where
        self.stale_after_s = stale_after_s
        #: Why the database cannot be written ("on a read-only file system"), or None.
        self.read_only = read_only
        #: Why the database is known to be damaged, or None; a damaged one is never written.
        self.damaged: str | None = None
        self._path = path
        self._checked = path is None
        self._check_lock = threading.Lock()
        self._silent_until = 0.0
        self._silent_message = ""

    def __repr__(self) -> str:
        return f"<Store {self.where}>"

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``); driver errors become StoreError."""
        self._before_write()
        options = {WRITE_OPTION: True}
        fired = self._fired()
        try:
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                yield conn
        except ServerTimeout:
            self._went_silent()
            raise
        except SQLAlchemyError as exc:
            raise self._error("write to", exc, fired) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction (a consistent snapshot across the queries inside it)."""
        if time.monotonic() < self._silent_until:
            # the server just stopped answering: one more wait would only delay the error
            raise ServerTimeout(self._silent_message)
        fired = self._fired()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except ServerTimeout:
            self._went_silent()
            raise
        except SQLAlchemyError as exc:
            raise self._error("read from", exc, fired) from exc

    def _went_silent(self) -> None:
        """Remember that the server stopped answering: reads fail at once for a while."""
        watchdog = watchdog_of(self.engine)
        if watchdog is not None:
            self._silent_until = time.monotonic() + watchdog.timeout_s
            self._silent_message = timeout_message(self.where, watchdog.timeout_s)

    def _before_write(self) -> None:
        """Refuse to write into a read-only or damaged database; check a file once first."""
        if self.read_only is not None:
            raise ReadOnlyError(
                f"{self.where} is read-only ({self.read_only}): it can be read, "
                "but runs cannot be recorded, imported or deleted there"
            )
        if self.damaged is not None:
            raise DamagedError(self.damaged)
        if self._checked:
            return
        with self._check_lock:
            if not self._checked and self._path is not None and self._path.exists():
                try:
                    _refuse_damaged(self._path, self.where)
                except DamagedError as exc:
                    self.damaged = str(exc)
                    raise
            self._checked = True

    def _fired(self) -> int:
        watchdog = watchdog_of(self.engine)
        return watchdog.fired if watchdog is not None else 0

    def _error(self, action: str, exc: SQLAlchemyError, fired: int) -> StoreError:
        """The true message for a driver error (and what it tells about the database)."""
        watchdog = watchdog_of(self.engine)
        if watchdog is not None and (watchdog.fired != fired or _connect_timed_out(exc)):
            self._went_silent()
            return ServerTimeout(timeout_message(self.where, watchdog.timeout_s))
        orig = exc.orig if isinstance(exc, DBAPIError) else None
        if isinstance(orig, sqlite3.Error):
            code = sqlite_code(orig)
            if code == "SQLITE_CORRUPT":
                self.damaged = _damaged_message(self.where, [sqlite_meaning(orig)])
                return DamagedError(self.damaged)
            if code == "SQLITE_READONLY":
                return ReadOnlyError(f"{action} {self.where} failed: {sqlite_meaning(orig)}")
        return StoreError(f"{action} {self.where} failed: {_reason(exc)}")

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        name: str,
        pipeline: str | None = None,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        device: str | None = None,
        torch_version: str | None = None,
        rank: int = 0,
        world_size: int = 1,
        group_id: str | None = None,
        command: str | None = None,
    ) -> RunInfo:
        """Create a ``running`` run with the calling process's provenance.

        Every value is checked against its column first (LimitError: too long, a NUL
        character, an integer out of range), so nothing is created for a bad one.
        """
        now = time.time()
        encoded = {
            "config": check_json_column("runs", "config", config),
            "tags": check_json_column("runs", "tags", tags),
        }
        values = {
            **provenance.current(),
            **run_values(notes=(), last_metrics={}),
            **encoded,
            "name": name,
            "pipeline": pipeline,
            "status": "running",
            "seed": seed,
            "device": device,
            "torch_version": torch_version,
            "rank": rank,
            "world_size": world_size,
            "group_id": group_id,
            "started_at": now,
            "updated_at": now,
            "step_count": 0,
        }
        if command is not None:
            values["command"] = command
        return self.get_run(self.insert_run(values))

    def insert_run(self, values: Mapping[str, Any]) -> int:
        """Insert a ``runs`` row from encoded column values and return its id."""
        check_values("runs", values)
        with self.writing() as conn:
            return int(
                conn.execute(insert(RUNS).values(**values).returning(RUNS.c.id)).scalar_one()
            )

    def writer(self, run_id: int) -> RunWriter:
        """The Sink that records a trace into run ``run_id``."""
        self.get_run(run_id)
        return RunWriter(self, run_id)

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Mark a run completed, failed or interrupted (with the error text, if any)."""
        if status not in _STATUSES:
            raise StoreError(
                f"unknown run status {status!r} (expected one of {', '.join(_STATUSES)})"
            )
        now = time.time()
        if error is not None:
            error = clip_text(error, ERROR_CHARS)  # the run must be marked, whatever the error said
        with self.writing() as conn:
            done = conn.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id)
                .values(status=status, error=error, finished_at=now, updated_at=now)
            )
            if done.rowcount == 0:
                raise RunNotFound(f"no run with id {run_id} in {self.where}")

    def list_runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        name: str | None = None,
        group_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        """Runs matching every given filter, newest first (dead ``running`` runs: interrupted)."""
        query = select(RUNS).order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc())
        for column, value in (("pipeline", pipeline), ("name", name), ("group_id", group_id)):
            if value is not None:
                query = query.where(RUNS.c[column] == value)
        if status in ("running", "interrupted"):
            # the stored status of an interrupted run may still be "running"
            query = query.where(RUNS.c.status.in_(("running", "interrupted")))
        elif status is not None:
            query = query.where(RUNS.c.status == status)
        with self.reading() as conn:
            runs = [self._info(row) for row in conn.execute(query).mappings()]
        if status is not None:
            runs = [run for run in runs if run.status == status]
        return runs[:limit] if limit is not None else runs

    def get_run(self, ref: int | str) -> RunInfo:
        """A run by id, by name (the newest with that name) or ``"latest"``."""
        newest = select(RUNS).order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc()).limit(1)
        with self.reading() as conn:
            row = None
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                row = conn.execute(select(RUNS).where(RUNS.c.id == int(ref))).mappings().first()
            if row is None and ref == "latest":
                row = conn.execute(newest).mappings().first()
            if row is None and isinstance(ref, str):
                row = conn.execute(newest.where(RUNS.c.name == ref)).mappings().first()
        if row is None:
            raise RunNotFound(f"no run {ref!r} in {self.where}")
        return self._info(row)

    def group(self, ref: int | str) -> GroupInfo:
        """The distributed job of a run (id, name, ``latest``) or with group id ``ref``."""
        from tracer.store.groups import find_group

        return find_group(self, ref)

    def run_of_rank(self, ref: int | str, rank: int | None) -> RunInfo:
        """The run of ``rank`` in the job of ``ref`` (a run or a group id); None: ``ref``'s run."""
        from tracer.store.groups import run_of_rank

        return run_of_rank(self, ref, rank)

    def _info(self, row: Mapping[Any, Any]) -> RunInfo:
        return queries.run_info(row, now=time.time(), stale_after_s=self.stale_after_s)

    def delete_run(self, run_id: int) -> None:
        """Delete a run and everything recorded for it."""
        with self.writing() as conn:
            if conn.execute(delete(RUNS).where(RUNS.c.id == run_id)).rowcount == 0:
                raise RunNotFound(f"no run with id {run_id} in {self.where}")

    # -- records -----------------------------------------------------------------------------

    def steps(self, run_id: int) -> list[int]:
        """The traced steps recorded for a run, ascending."""
        with self.reading() as conn:
            return queries.steps(conn, run_id)

    def flow(self, run_id: int, step: int) -> list[CallRecord]:
        """The calls of one traced step in ``seq`` order, with their tensors."""
        with self.reading() as conn:
            return queries.flow(conn, run_id, step)

    def flows(self, run_id: int, steps: Iterable[int] | None = None) -> dict[int, list[CallRecord]]:
        """Many traced steps at once (all recorded ones for None), by step, in one snapshot."""
        from tracer.store import bulk

        with self.reading() as conn:
            return bulk.flows(conn, run_id, steps)

    def call_rows(self, run_id: int, steps: Iterable[int] | None = None) -> list[tuple[Any, ...]]:
        """Traced steps' calls as plain rows (bulk.call_rows): far cheaper than flows."""
        from tracer.store import bulk

        with self.reading() as conn:
            return bulk.call_rows(conn, run_id, steps)

    def tensor_values(
        self,
        run_id: int,
        steps: Iterable[int] | None,
        roles: Iterable[str],
        fields: Sequence[str],
        *,
        nonfinite: bool = False,
    ) -> list[tuple[Any, ...]]:
        """``(step, seq, *fields)`` of the tensor records in ``roles``, without the records."""
        from tracer.store import bulk

        with self.reading() as conn:
            return bulk.tensor_values(conn, run_id, steps, roles, fields, nonfinite=nonfinite)

    def step_facts(
        self, run_id: int, steps: Iterable[int] | None = None
    ) -> dict[int, tuple[frozenset[str], frozenset[str], bool, bool, bool]]:
        """Per traced step: dtypes, devices, NaN or Inf, gradients, a flat output (see bulk)."""
        from tracer.store import bulk

        with self.reading() as conn:
            return bulk.step_facts(conn, run_id, steps)

    def module_tree(self, run_id: int) -> list[ModuleRecord]:
        """The run's modules in ``named_modules()`` order."""
        with self.reading() as conn:
            return queries.module_tree(conn, run_id)

    def series(
        self,
        run_id: int,
        module: str,
        *,
        slot: str = "0",
        stat: str = "mean",
        role: str = "output",
        call_index: int = 0,
        kind: str = "module",
        op: str | None = None,
    ) -> list[tuple[int, float]]:
        """One statistic of one layer's tensor slot across all traced steps: (step, value)."""
        key = queries.SeriesKey(module, slot, stat, role, call_index, kind, op)
        with self.reading() as conn:
            return queries.series(conn, run_id, key)

    def metrics(self, run_id: int) -> list[MetricRecord]:
        """Every metric logged for a run, by step then in logging order."""
        with self.reading() as conn:
            return queries.metrics(conn, run_id)

    # -- moving and comparing runs -----------------------------------------------------------

    def export_run(self, run_id: int, path: str | os.PathLike[str]) -> None:
        """Write a run to a portable JSON-lines file."""
        from tracer.store.portable import export_run

        export_run(self, self.get_run(run_id).id, Path(path))

    def import_run(self, path: str | os.PathLike[str], *, as_new: bool = False) -> RunInfo:
        """Read a run exported by :meth:`export_run` into this store, under a new id.

        A run this store already holds (same origin) is refused unless ``as_new``."""
        from tracer.store.portable import import_run

        return import_run(self, Path(path), as_new=as_new)

    def diff(
        self,
        ref_a: int | str,
        ref_b: int | str,
        step_a: int | None = None,
        step_b: int | None = None,
    ) -> FlowDiff:
        """Compare one traced step of two runs (default: their first common traced step)."""
        from tracer.store.diff import diff_runs

        return diff_runs(self, ref_a, ref_b, step_a, step_b)
