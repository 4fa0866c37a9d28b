"""Records to plain row tuples and back: the only place that knows the column layout.

The write side builds tuples (no ORM objects, no dicts) because it runs once per tensor of every
traced step; the read side rebuilds the frozen records from Core result rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from tracer.records import (
    CallRecord,
    ModuleRecord,
    ParamRecord,
    TensorRecord,
    frozen_mapping,
)
from tracer.store.floats import decode, encode, encode_many
from tracer.store.schema import STAT_COLUMNS

CALL_COLUMNS = (
    "run_id",
    "step",
    "seq",
    "module",
    "type",
    "call_index",
    "kind",
    "op",
    "duration_s",
    "depth",
)
TENSOR_KEY = ("run_id", "step", "seq", "pos")
TENSOR_FIELDS = ("role", "slot", "shape", "dtype", "device", "requires_grad", "type_name")
TENSOR_COLUMNS = TENSOR_KEY + TENSOR_FIELDS + STAT_COLUMNS + ("special",)
EXTRA_COLUMNS = (*TENSOR_KEY, "name", "value", "special")
_STAT_SET = frozenset(STAT_COLUMNS)
_ALL_STATS = itemgetter(*STAT_COLUMNS)


def _stat_values(stats: Mapping[str, float]) -> tuple[Sequence[float | None], int]:
    try:
        values = _ALL_STATS(stats)  # one C call when every built-in statistic is present
    except KeyError:
        return encode_many([stats.get(name) for name in STAT_COLUMNS])
    if math.isfinite(sum(values)):
        return values, 0  # fast path: every statistic finite (a NaN or Inf makes the sum so)
    return encode_many(values)


def step_rows(
    run_id: int, step: int, calls: Sequence[CallRecord]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of ``calls``, ``tensors`` and ``extra_stats`` for one traced step."""
    call_rows: list[tuple[Any, ...]] = []
    tensor_rows: list[tuple[Any, ...]] = []
    extra_rows: list[tuple[Any, ...]] = []
    for call in calls:
        seq = call.seq
        call_rows.append(
            (
                run_id,
                step,
                seq,
                call.module,
                call.type,
                call.call_index,
                call.kind,
                call.op,
                call.duration_s,
                call.depth,
            )
        )
        for pos, t in enumerate(call.inputs + call.outputs + call.grads):
            values, special = _stat_values(t.stats)
            type_name = None if t.type_name == "Tensor" else t.type_name
            shape = ",".join(map(str, t.shape))
            tensor_rows.append(
                (
                    run_id,
                    step,
                    seq,
                    pos,
                    t.role,
                    t.slot,
                    shape,
                    t.dtype,
                    t.device,
                    int(t.requires_grad),
                    type_name,
                    *values,
                    special,
                )
            )
            if not _STAT_SET.issuperset(t.stats):
                extra_rows.extend(_extra_rows(run_id, step, seq, pos, t.stats))
    return call_rows, tensor_rows, extra_rows


def _extra_rows(
    run_id: int, step: int, seq: int, pos: int, stats: Mapping[str, float]
) -> Iterable[tuple[Any, ...]]:
    for name, value in stats.items():
        if name not in _STAT_SET:
            column, special = encode(float(value))
            yield (run_id, step, seq, pos, name, column, special)


def parse_shape(text: str) -> tuple[int, ...]:
    """Inverse of the ``"50,200,512"`` shape encoding."""
    return tuple(int(d) for d in text.split(",")) if text else ()


def tensor_record(row: Sequence[Any], extras: Mapping[str, float] | None) -> TensorRecord:
    """Rebuild a TensorRecord from a ``tensors`` row (columns after the key, see TENSOR_COLUMNS)."""
    role, slot, shape, dtype, device, requires_grad, type_name = row[:7]
    special = row[-1]
    stats: dict[str, float] = {}
    for i, name in enumerate(STAT_COLUMNS):
        value = decode(row[7 + i], special, i)
        if value is not None:
            stats[name] = value
    if extras:
        stats.update(extras)
    return TensorRecord(
        slot=slot,
        shape=parse_shape(shape),
        dtype=dtype,
        device=device,
        requires_grad=bool(requires_grad),
        role=role,
        type_name=type_name or "Tensor",
        stats=frozen_mapping(stats),
    )


def call_record(step: int, row: Sequence[Any], tensors: Sequence[TensorRecord]) -> CallRecord:
    """Rebuild a CallRecord from a ``calls`` row (without run_id and step) and its tensors."""
    seq, module, type_, call_index, kind, op, duration_s, depth = row
    return CallRecord(
        step=step,
        seq=seq,
        module=module,
        type=type_,
        call_index=call_index,
        kind=kind,
        op=op,
        inputs=tuple(t for t in tensors if t.role == "input"),
        outputs=tuple(t for t in tensors if t.role == "output"),
        grads=tuple(t for t in tensors if t.role in ("grad", "param_grad")),
        duration_s=duration_s,
        depth=depth,
    )


def module_row(run_id: int, idx: int, module: ModuleRecord) -> dict[str, Any]:
    """A ``modules`` row for one ModuleRecord."""
    params = [
        [p.name, list(p.shape), p.dtype, p.numel, p.requires_grad, p.shared_with]
        for p in module.parameters
    ]
    return {
        "run_id": run_id,
        "idx": idx,
        "path": module.path,
        "type": module.type,
        "parent": module.parent,
        "depth": module.depth,
        "params_own": module.params_own,
        "params_total": module.params_total,
        "trainable_own": module.trainable_own,
        "trainable_total": module.trainable_total,
        "extra_repr": module.extra_repr,
        "parameters": json.dumps(params),
    }


def module_record(row: Mapping[Any, Any]) -> ModuleRecord:
    """Rebuild a ModuleRecord from a ``modules`` row mapping."""
    params = tuple(
        ParamRecord(name, tuple(shape), dtype, numel, bool(grad), shared)
        for name, shape, dtype, numel, grad, shared in json.loads(row["parameters"])
    )
    return ModuleRecord(
        path=row["path"],
        type=row["type"],
        parent=row["parent"],
        depth=row["depth"],
        params_own=row["params_own"],
        params_total=row["params_total"],
        trainable_own=row["trainable_own"],
        trainable_total=row["trainable_total"],
        extra_repr=row["extra_repr"],
        parameters=params,
    )
