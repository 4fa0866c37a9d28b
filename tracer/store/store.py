"""The Store: runs and their records in one database (SQLite file, in memory, or PostgreSQL)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tracer.records import CallRecord, MetricRecord, ModuleRecord, RunInfo, RunStatus
from tracer.store import provenance, queries
from tracer.store.engine import WRITE_OPTION, make_engine, resolve_url, sqlite_file
from tracer.store.errors import RunNotFound, StoreError
from tracer.store.liveness import DEFAULT_STALE_AFTER_S
from tracer.store.migrate import ensure_schema, precheck_sqlite_file
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
    if path is not None:
        precheck_sqlite_file(path)
        where = str(path)
    engine = make_engine(url)
    try:
        ensure_schema(engine, where)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open {where}: {_reason(exc)}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, where, stale_after_s=stale_after_s)


def _reason(exc: SQLAlchemyError) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip().splitlines()[0]
    return str(exc).splitlines()[0]


class Store:
    """Runs, their traced steps, modules and metrics; every method returns frozen records."""

    def __init__(self, engine: Engine, where: str, *, stale_after_s: float) -> None:
        self.engine = engine
        self.where = where
        self.stale_after_s = stale_after_s

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
        options = {WRITE_OPTION: True}
        try:
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"write to {self.where} failed: {_reason(exc)}") from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction (a consistent snapshot across the queries inside it)."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"read from {self.where} failed: {_reason(exc)}") from exc

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
        """Create a ``running`` run with the calling process's provenance."""
        now = time.time()
        values = {
            **provenance.current(),
            **run_values(config=config, tags=tags, notes=(), last_metrics={}),
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

    def import_run(self, path: str | os.PathLike[str]) -> RunInfo:
        """Read a run exported by :meth:`export_run` into this store, under a new id."""
        from tracer.store.portable import import_run

        return import_run(self, Path(path))

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
