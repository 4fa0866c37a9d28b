"""Read queries: each takes a connection and returns frozen records (never rows)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, NamedTuple, get_args

from sqlalchemy import Connection, Table, and_, select

from tracer.records import CallRecord, MetricRecord, ModuleRecord, Role, RunInfo, frozen_mapping
from tracer.store import rows
from tracer.store.floats import decode
from tracer.store.liveness import effective_status
from tracer.store.provenance import host_name
from tracer.store.schema import STAT_COLUMNS, CallRow, ExtraStatRow, MetricRow, ModuleRow, TensorRow

CALLS: Table = CallRow.__table__  # type: ignore[assignment]
TENSORS: Table = TensorRow.__table__  # type: ignore[assignment]
EXTRAS: Table = ExtraStatRow.__table__  # type: ignore[assignment]
MODULES: Table = ModuleRow.__table__  # type: ignore[assignment]
METRICS: Table = MetricRow.__table__  # type: ignore[assignment]
_ROLES: tuple[str, ...] = get_args(Role)
_HOST = host_name()


class SeriesKey(NamedTuple):
    """Which values :func:`series` follows across steps."""

    module: str
    slot: str
    stat: str
    role: str
    call_index: int
    kind: str
    op: str | None


def run_info(row: Mapping[Any, Any], *, now: float, stale_after_s: float) -> RunInfo:
    """Build a RunInfo from a ``runs`` row, with the status a dead process implies."""
    status = effective_status(
        row["status"],
        host=row["host"],
        pid=row["pid"],
        updated_at=row["updated_at"],
        this_host=_HOST,
        now=now,
        stale_after_s=stale_after_s,
    )
    fields = {k: row[k] for k in RunInfo.__dataclass_fields__ if k in row.keys()}  # noqa: SIM118
    fields.update(
        status=status,
        config=frozen_mapping(json.loads(row["config"])),
        tags=frozen_mapping(json.loads(row["tags"])),
        notes=tuple(json.loads(row["notes"])),
        last_metrics=frozen_mapping(json.loads(row["last_metrics"])),
        steps=row["step_count"],
    )
    return RunInfo(**fields)


def steps(conn: Connection, run_id: int) -> list[int]:
    """Distinct traced steps of a run, ascending."""
    query = select(CALLS.c.step).where(CALLS.c.run_id == run_id).distinct().order_by(CALLS.c.step)
    return list(conn.execute(query).scalars())


def flow(conn: Connection, run_id: int, step: int) -> list[CallRecord]:
    """The calls of one step with their tensors, in ``seq`` order."""
    where = (CALLS.c.run_id == run_id) & (CALLS.c.step == step)
    call_cols = [CALLS.c[name] for name in rows.CALL_COLUMNS[2:]]
    calls = conn.execute(select(*call_cols).where(where).order_by(CALLS.c.seq)).all()
    if not calls:
        return []
    extras: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    ewhere = (EXTRAS.c.run_id == run_id) & (EXTRAS.c.step == step)
    query = select(EXTRAS.c.seq, EXTRAS.c.pos, EXTRAS.c.name, EXTRAS.c.value, EXTRAS.c.special)
    for seq, pos, name, value, special in conn.execute(query.where(ewhere)):
        extras[(seq, pos)][name] = decode(value, special)  # type: ignore[assignment]
    tensors: dict[int, list[Any]] = defaultdict(list)
    tcols = [TENSORS.c[name] for name in rows.TENSOR_COLUMNS[2:]]
    twhere = (TENSORS.c.run_id == run_id) & (TENSORS.c.step == step)
    for row in conn.execute(select(*tcols).where(twhere).order_by(TENSORS.c.seq, TENSORS.c.pos)):
        seq, pos = row[0], row[1]
        tensors[seq].append(rows.tensor_record(row[2:], extras.get((seq, pos))))
    return [rows.call_record(step, row, tensors.get(row[0], ())) for row in calls]


def module_tree(conn: Connection, run_id: int) -> list[ModuleRecord]:
    """The run's modules in ``named_modules()`` order."""
    query = select(MODULES).where(MODULES.c.run_id == run_id).order_by(MODULES.c.idx)
    return [rows.module_record(row) for row in conn.execute(query).mappings()]


def series(conn: Connection, run_id: int, key: SeriesKey) -> list[tuple[int, float]]:
    """One statistic of one call's tensor slot across steps; steps without a value are left out."""
    if key.role not in _ROLES:
        raise ValueError(f"unknown role {key.role!r} (expected one of {', '.join(_ROLES)})")
    op_match = CALLS.c.op.is_(None) if key.op is None else CALLS.c.op == key.op
    calls = (
        (CALLS.c.run_id == run_id)
        & (CALLS.c.module == key.module)
        & (CALLS.c.call_index == key.call_index)
        & (CALLS.c.kind == key.kind)
        & op_match
    )
    joined = CALLS.join(
        TENSORS,
        and_(
            TENSORS.c.run_id == CALLS.c.run_id,
            TENSORS.c.step == CALLS.c.step,
            TENSORS.c.seq == CALLS.c.seq,
        ),
    )
    slot = (TENSORS.c.role == key.role) & (TENSORS.c.slot == key.slot)
    if key.stat in STAT_COLUMNS:
        index = STAT_COLUMNS.index(key.stat)
        column, special = TENSORS.c[key.stat], TENSORS.c.special
    else:
        extra = (EXTRAS.c[k] == TENSORS.c[k] for k in rows.TENSOR_KEY)
        joined = joined.join(EXTRAS, and_(*extra, EXTRAS.c.name == key.stat))
        index = 0  # one value per row: its code is the row's only one
        column, special = EXTRAS.c.value, EXTRAS.c.special
    query = select(CALLS.c.step, column, special).select_from(joined).where(calls & slot)
    found = conn.execute(query.order_by(CALLS.c.step))
    points = ((step, decode(value, code, index)) for step, value, code in found)
    return [(step, value) for step, value in points if value is not None]


def metrics(conn: Connection, run_id: int) -> list[MetricRecord]:
    """Every metric of a run, by step then in logging order."""
    query = (
        select(METRICS.c.step, METRICS.c.name, METRICS.c.value, METRICS.c.special)
        .where(METRICS.c.run_id == run_id)
        .order_by(METRICS.c.step, METRICS.c.id)
    )
    return [
        MetricRecord(step, name, decode(value, special))  # type: ignore[arg-type]
        for step, name, value, special in conn.execute(query)
    ]
