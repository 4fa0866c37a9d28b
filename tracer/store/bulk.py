"""Many traced steps of a run in three queries (calls, tensors, extra statistics), not per step.

What ``tracer check`` reads: a whole run's flows at once. The rows become records through the
same code as :func:`tracer.store.queries.flow` (``rows.tensor_record``, ``rows.call_record``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from tracer.records import CallRecord, TensorRecord
from tracer.store import rows
from tracer.store.floats import decode
from tracer.store.queries import CALLS, EXTRAS, TENSORS
from tracer.store.schema import STAT_COLUMNS

_Key = tuple[int, int]  # (step, seq)
#: Rows are read as (step, seq, pos, *rows.TENSOR_COLUMNS[4:]): the key, then rows.py's layout.
_KEY = 3
_FIELD = {name: _KEY + i for i, name in enumerate(rows.TENSOR_FIELDS)}
_FIRST_STAT = _KEY + len(rows.TENSOR_FIELDS)
_LAST_STAT = _FIRST_STAT + len(STAT_COLUMNS)
#: A row's fields in the order TensorRecord takes them (type_name and requires_grad fixed after).
_HEAD = itemgetter(*(_FIELD[n] for n in ("slot", "dtype", "device", "role", "type_name")))


class _Tensors:
    """Rows to TensorRecords; the common row (every statistic a plain number) on a short path.

    A run's rows share a handful of shapes, so each shape text is parsed once. A row with a
    non-finite or absent statistic goes through ``rows.tensor_record``; both give equal
    records (tested, extra statistics included).
    """

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}

    def record(self, row: Sequence[Any], extras: Mapping[str, float] | None) -> TensorRecord:
        values = row[_FIRST_STAT:_LAST_STAT]
        if row[-1] or None in values:
            return rows.tensor_record(row[_KEY:], extras)
        text = row[_FIELD["shape"]]
        shape = self.shapes.get(text)
        if shape is None:
            shape = self.shapes[text] = rows.parse_shape(text)
        slot, dtype, device, role, type_name = _HEAD(row)
        found = dict(zip(STAT_COLUMNS, values, strict=True))
        if extras:
            found.update(extras)
        stats = MappingProxyType(found)
        requires_grad = bool(row[_FIELD["requires_grad"]])
        return TensorRecord(
            slot, shape, dtype, device, requires_grad, role, type_name or "Tensor", stats
        )


def _steps_where(table: Any, run_id: int, steps: list[int] | None) -> ColumnElement[bool]:
    """Rows of the run, within the chosen steps' range (the exact set is kept in Python)."""
    where = table.c.run_id == run_id
    if steps is not None:
        where = where & table.c.step.between(min(steps), max(steps))
    return where


def _extras(conn: Connection, run_id: int, steps: list[int] | None) -> dict[Any, dict[str, Any]]:
    """Extra statistics by (step, seq, pos)."""
    found: dict[tuple[int, int, int], dict[str, Any]] = defaultdict(dict)
    cols = (EXTRAS.c.step, EXTRAS.c.seq, EXTRAS.c.pos, EXTRAS.c.name)
    query = select(*cols, EXTRAS.c.value, EXTRAS.c.special)
    for step, seq, pos, name, value, special in conn.execute(
        query.where(_steps_where(EXTRAS, run_id, steps))
    ):
        found[step, seq, pos][name] = decode(value, special)
    return found


def flows(
    conn: Connection, run_id: int, steps: Iterable[int] | None = None
) -> dict[int, list[CallRecord]]:
    """Each traced step's calls with their tensors, in ``seq`` order, by ascending step.

    ``steps`` limits the read to those steps (None: every recorded one); a step with no calls
    is absent from the result.
    """
    chosen = None if steps is None else sorted(set(steps))
    if chosen == []:
        return {}
    wanted = None if chosen is None else frozenset(chosen)
    extras = _extras(conn, run_id, chosen)
    tensors: dict[_Key, list[Any]] = {}
    build = _Tensors().record
    tcols = [TENSORS.c[name] for name in rows.TENSOR_COLUMNS[1:]]
    tquery = select(*tcols).where(_steps_where(TENSORS, run_id, chosen))
    at: tuple[int, int] | None = None
    bucket: list[Any] = []
    # rows come in (step, seq, pos) order: a call's tensors are consecutive
    for row in conn.execute(tquery.order_by(TENSORS.c.step, TENSORS.c.seq, TENSORS.c.pos)):
        step, seq = row[0], row[1]
        if at is None or seq != at[1] or step != at[0]:
            if wanted is not None and step not in wanted:
                continue
            at = (step, seq)
            bucket = tensors[at] = []
        bucket.append(build(row, extras.get((step, seq, row[2])) if extras else None))
    found: dict[int, list[CallRecord]] = {}
    ccols = [CALLS.c[name] for name in rows.CALL_COLUMNS[1:]]
    cquery = select(*ccols).where(_steps_where(CALLS, run_id, chosen))
    for row in conn.execute(cquery.order_by(CALLS.c.step, CALLS.c.seq)):
        step, seq = row[0], row[1]
        if wanted is not None and step not in wanted:
            continue
        call = rows.call_record(step, row[1:], tensors.get((step, seq), ()))
        found.setdefault(step, []).append(call)
    return found
