"""``nan``: the layer that made a NaN or Inf, not every layer downstream of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tracer.checks.builtin.spans import Where, spans, step_text
from tracer.checks.findings import Finding
from tracer.checks.rules import Rule
from tracer.checks.view import RunRecords
from tracer.records import CallRecord


def _innermost(flow: Sequence[CallRecord], made: list[int]) -> list[int]:
    """Of the calls at ``made`` (indexes into ``flow``), those with no such call nested inside."""
    chosen = []
    marked = set(made)
    for i in made:
        depth, nested = flow[i].depth, False
        for j in range(i + 1, len(flow)):
            if flow[j].depth <= depth:
                break
            if j in marked:
                nested = True
                break
        if not nested:
            chosen.append(i)
    return chosen


_Row = tuple[Any, ...]  # step, seq, role, slot, nan_count, inf_count
_FIELDS = ("role", "slot", "nan_count", "inf_count")
_ROLES = ("input", "output", "grad", "param_grad")


def _counts(row: _Row) -> tuple[int, int]:
    return int(row[4] or 0), int(row[5] or 0)


def _bad(records: RunRecords) -> dict[int, dict[int, list[_Row]]]:
    """The records that count a NaN or an Inf, by step, then by seq in flow order."""
    found: dict[int, dict[int, list[_Row]]] = {}
    for row in records.values(_ROLES, _FIELDS, nonfinite=True):
        if sum(_counts(row)):
            found.setdefault(row[0], {}).setdefault(row[1], []).append(row)
    return found


def _where(call: CallRecord, row: _Row) -> Where:
    return Where(call.module, call.call_index, call.kind, call.op, row[2], row[3])


def _forward(
    flow: Sequence[CallRecord], bad: dict[int, list[_Row]]
) -> dict[Where, tuple[int, int, int]]:
    """Output slots that turned non-finite where the call's inputs were all finite."""
    position = {call.seq: i for i, call in enumerate(flow)}
    made: list[int] = []
    for seq, rows in bad.items():
        roles = {row[2] for row in rows}
        if "output" in roles and "input" not in roles:
            made.append(position[seq])
    found: dict[Where, tuple[int, int, int]] = {}
    for i in _innermost(flow, sorted(made)):
        for row in bad[flow[i].seq]:
            if row[2] == "output":
                found[_where(flow[i], row)] = (flow[i].seq, *_counts(row))
    return found


def _backward(
    flow: Sequence[CallRecord], bad: dict[int, list[_Row]]
) -> dict[Where, tuple[int, int, int]]:
    """Where a NaN or Inf first shows in the backward pass, when the forward had none.

    Gradients run from the last call to the first: the last call in flow order whose output
    gradient is non-finite is where it is first seen; a module whose parameters' gradients are
    non-finite while its output gradients are finite made them itself.
    """
    position = {call.seq: i for i, call in enumerate(flow)}
    found: dict[Where, tuple[int, int, int]] = {}
    for seq in sorted(bad, reverse=True):
        grads = [row for row in bad[seq] if row[2] == "grad"]
        if grads:
            for row in grads:
                found[_where(flow[position[seq]], row)] = (seq, *_counts(row))
            break
    for seq, rows in bad.items():
        if any(row[2] == "grad" for row in rows):
            continue
        for row in rows:
            if row[2] == "param_grad":
                found[_where(flow[position[seq]], row)] = (seq, *_counts(row))
    return found


def check_nan(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding]:
    hits: dict[Where, list[tuple[int, int]]] = {}
    counts: dict[tuple[Where, int], tuple[int, int]] = {}
    bad = _bad(records) if any(facts.nonfinite for facts in records.facts.values()) else {}
    for step, by_call in bad.items():
        flow = records.skeleton[step]
        made = _forward(flow, by_call)
        if not made:
            made = _backward(flow, by_call)
        for where, (seq, nan, inf) in made.items():
            hits.setdefault(where, []).append((step, seq))
            counts[where, step] = (nan, inf)
    for where, points in hits.items():
        for span in spans(points, records.steps):
            nan, inf = counts[where, span.first]
            what = " and ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "Inf")) if n)
            source = "its inputs were finite" if where.role == "output" else "upstream was finite"
            name = where.module or "<root>"
            if where.kind == "op" and where.op:
                name = f"{name}:{where.op}"
            yield Finding(
                rule="nan",
                severity="error",
                module=where.module,
                call_index=where.call_index,
                kind="op" if where.kind == "op" else "module",
                op=where.op,
                slot=where.slot,
                role=where.role,
                step=span.first,
                until=span.until,
                seq=span.seq,
                message=(
                    f"{name} made {what} in its {where.role.replace('_', ' ')} "
                    f"{where.slot} at {step_text(span.first, span.until)} ({source})"
                ),
                figures={"nan_count": nan, "inf_count": inf},
            )


RULE = Rule(
    name="nan",
    severity="error",
    summary="the layer whose output (or gradient) first holds NaN or Inf, its inputs finite",
    check=check_nan,
)
