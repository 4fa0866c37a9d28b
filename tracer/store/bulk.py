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

from sqlalchemy import ColumnElement, Connection, case, func, select
from sqlalchemy.exc import DBAPIError

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


def _plain_rows(conn: Connection, query: Any) -> list[Any]:
    """A query's rows as the driver's own tuples, without SQLAlchemy's row objects: on a read
    of a whole run those cost more than the database does. Errors come wrapped as usual."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args = tuple(params[k] for k in compiled.positiontup) if compiled.positional else params
    sql = str(compiled)
    result = conn.exec_driver_sql(sql, args)
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        return list(result.cursor.fetchall())
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, args, exc, dbapi_error) from exc
    finally:
        result.close()


def _steps_where(table: Any, run_id: int, steps: list[int] | None) -> ColumnElement[bool]:
    """Rows of the run, within the chosen steps' range (the exact set is kept in Python)."""
    where = table.c.run_id == run_id
    if steps is not None:
        where = where & table.c.step.between(min(steps), max(steps))
    return where


def _extras(
    conn: Connection, run_id: int, steps: list[int] | None, names: list[str] | None = None
) -> dict[Any, dict[str, Any]]:
    """Extra statistics by (step, seq, pos): every one, or only those named."""
    found: dict[tuple[int, int, int], dict[str, Any]] = defaultdict(dict)
    cols = (EXTRAS.c.step, EXTRAS.c.seq, EXTRAS.c.pos, EXTRAS.c.name)
    where = _steps_where(EXTRAS, run_id, steps)
    if names is not None:
        where = where & EXTRAS.c.name.in_(names)
    query = select(*cols, EXTRAS.c.value, EXTRAS.c.special).where(where)
    for step, seq, pos, name, value, special in conn.execute(query):
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


# -- narrow reads: what a check needs without building every record -------------------------

#: TensorRecord attributes a narrow read can return, and how a column's value becomes one.
_ATTRIBUTES: dict[str, Any] = {
    "role": None,
    "slot": None,
    "dtype": None,
    "device": None,
    "shape": rows.parse_shape,
    "requires_grad": bool,
    "type_name": lambda name: name or "Tensor",
}
_STAT_INDEX = {name: i for i, name in enumerate(STAT_COLUMNS)}


def _chosen(steps: Iterable[int] | None) -> list[int] | None:
    return None if steps is None else sorted(set(steps))


def call_rows(
    conn: Connection, run_id: int, steps: Iterable[int] | None = None
) -> list[tuple[Any, ...]]:
    """The traced steps' calls as plain rows, ``rows.CALL_COLUMNS`` without ``run_id`` (step,
    seq, module, type, call_index, kind, op, duration_s, depth), by step and seq: the calls
    table alone, no record built."""
    chosen = _chosen(steps)
    if chosen == []:
        return []
    cols = [CALLS.c[name] for name in rows.CALL_COLUMNS[1:]]
    query = select(*cols).where(_steps_where(CALLS, run_id, chosen))
    found = _plain_rows(conn, query.order_by(CALLS.c.step, CALLS.c.seq))
    if chosen and len(chosen) != chosen[-1] - chosen[0] + 1:
        wanted = frozenset(chosen)
        found = [row for row in found if row[0] in wanted]  # the query read their whole range
    return found


def tensor_values(
    conn: Connection,
    run_id: int,
    steps: Iterable[int] | None,
    roles: Iterable[str],
    fields: Sequence[str],
    *,
    nonfinite: bool = False,
) -> list[tuple[Any, ...]]:
    """``(step, seq, *fields)`` of each tensor record in ``roles``, by (step, seq, pos); with
    ``nonfinite``, only those whose ``nan_count`` or ``inf_count`` is not zero.

    A field is a TensorRecord attribute (``slot``, ``shape``, ``dtype``...) or a statistic's
    name, built-in or extra (None where a record lacks it); values are what the records read
    back by :func:`flows` hold, NaN and Inf included, without building those records.
    """
    chosen = _chosen(steps)
    if chosen == []:
        return []
    wanted = None if chosen is None else frozenset(chosen)
    extra = [f for f in fields if f not in _ATTRIBUTES and f not in _STAT_INDEX]
    # the fields' columns, then pos and special: a plain row is the result without its tail
    cols = [TENSORS.c.step, TENSORS.c.seq]
    cols += [TENSORS.c[f] for f in fields if f not in extra]
    cols += [TENSORS.c.pos, TENSORS.c.special]
    where = _steps_where(TENSORS, run_id, chosen) & TENSORS.c.role.in_(sorted(set(roles)))
    if nonfinite:
        where = where & _nonfinite()
    query = select(*cols).where(where).order_by(TENSORS.c.step, TENSORS.c.seq, TENSORS.c.pos)
    found = _plain_rows(conn, query)
    if wanted is not None and chosen and len(wanted) != chosen[-1] - chosen[0] + 1:
        found = [row for row in found if row[0] in wanted]  # the query read their whole range
    # where each field comes from: a column (converted or decoded) or the extras
    plan: list[tuple[str, int, Any]] = []
    at = 2
    for f in fields:
        if f in extra:
            plan.append(("extra", 0, f))
            continue
        if f in _STAT_INDEX:
            plan.append(("stat", at, _STAT_INDEX[f]))
        else:
            plan.append(("attr", at, _ATTRIBUTES[f]))
        at += 1
    if all(kind == "attr" and how is None for kind, _, how in plan):
        return [row[:-2] for row in found]  # no statistic: no special to decode
    extras = _extras(conn, run_id, chosen, extra) if extra else {}
    shapes: dict[str, tuple[int, ...]] = {}

    def build(row: Sequence[Any]) -> tuple[Any, ...]:
        step, seq, special = row[0], row[1], row[-1]
        values: list[Any] = [step, seq]
        for kind, index, how in plan:
            if kind == "stat":
                values.append(decode(row[index], special, how))
            elif kind == "extra":
                values.append(extras.get((step, seq, row[-2]), {}).get(how))
            elif how is rows.parse_shape:
                text = row[index]
                shape = shapes.get(text)
                if shape is None:
                    shape = shapes[text] = rows.parse_shape(text)
                values.append(shape)
            else:
                values.append(row[index] if how is None else how(row[index]))
        return tuple(values)

    if all(kind == "stat" or (kind == "attr" and how is None) for kind, _, how in plan):
        # the common row, every statistic a plain number, is the query's row without its tail
        return [build(row) if row[-1] else row[:-2] for row in found]
    return [build(row) for row in found]


def _nonfinite() -> ColumnElement[bool]:
    """A tensors row whose nan_count or inf_count is not zero (a count stored as NaN or Inf,
    a NULL column with bits in ``special``, is not zero either)."""
    t = TENSORS.c
    mask = sum(3 << (2 * _STAT_INDEX[name]) for name in ("nan_count", "inf_count"))
    return (t.nan_count != 0) | (t.inf_count != 0) | (t.special.op("&")(mask) != 0)


#: What :func:`step_facts` tells of one step (see tracer.checks.view.StepFacts).
StepFactsRow = tuple[frozenset[str], frozenset[str], bool, bool, bool]


def step_facts(
    conn: Connection, run_id: int, steps: Iterable[int] | None = None
) -> dict[int, StepFactsRow]:
    """Per traced step with tensors: its dtypes, its devices, whether any statistic counts a NaN
    or Inf, whether it holds gradients, whether an output of more than one value has a finite
    min equal to its max. Computed by the database in two queries, no records built."""
    chosen = _chosen(steps)
    if chosen == []:
        return {}
    wanted = None if chosen is None else frozenset(chosen)
    t = TENSORS.c
    flat = (t.role == "output") & (t.min == t.max) & (t.numel > 1)
    where = _steps_where(TENSORS, run_id, chosen)
    marks = select(
        t.step,
        func.max(case((_nonfinite(), 1), else_=0)),
        func.max(case((t.role.in_(("grad", "param_grad")), 1), else_=0)),
        func.max(case((flat, 1), else_=0)),
    ).where(where)
    kinds = select(t.step, t.dtype, t.device).where(where).distinct()
    merged: dict[int, tuple[set[str], set[str], list[bool]]] = {}
    for step, bad, grads, flats in _plain_rows(conn, marks.group_by(t.step)):
        if wanted is None or step in wanted:
            merged[step] = (set(), set(), [bool(bad), bool(grads), bool(flats)])
    for step, dtype, device in _plain_rows(conn, kinds):
        if step in merged:
            merged[step][0].add(dtype)
            merged[step][1].add(device)
    return {
        step: (frozenset(dtypes), frozenset(devices), *flags)  # type: ignore[misc]
        for step, (dtypes, devices, flags) in sorted(merged.items())
    }
