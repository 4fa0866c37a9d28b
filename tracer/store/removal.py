"""Whether a run may be deleted: never one that a process may still be writing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from tracer.store.errors import RunNotFound
from tracer.store.liveness import still_written
from tracer.store.provenance import host_name
from tracer.store.writer import RUNS

if TYPE_CHECKING:
    from tracer.store.store import Store


def why_not_removable(store: Store, run_id: int) -> str | None:
    """Why run ``run_id`` must not be deleted now (its writer may be alive), or None."""
    query = select(RUNS.c.status, RUNS.c.host, RUNS.c.pid, RUNS.c.updated_at)
    with store.reading() as conn:
        row = conn.execute(query.where(RUNS.c.id == run_id)).first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id} in {store.where}")
    status, host, pid, updated_at = row
    return still_written(
        status, host=host, pid=pid, updated_at=updated_at, this_host=host_name(), now=time.time()
    )
