"""``nan``: the layer that made a NaN or Inf, not every layer downstream of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from tracer.checks.builtin.spans import Where, nonfinite, spans, step_text
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


def _forward(flow: Sequence[CallRecord]) -> dict[Where, tuple[int, int, int]]:
    """Output slots that turned non-finite where the call's inputs were all finite."""
    made: list[int] = []
    for i, call in enumerate(flow):
        if any(sum(nonfinite(t)) for t in call.inputs):
            continue
        if any(sum(nonfinite(t)) for t in call.outputs):
            made.append(i)
    found: dict[Where, tuple[int, int, int]] = {}
    for i in _innermost(flow, made):
        for t in flow[i].outputs:
            nan, inf = nonfinite(t)
            if nan or inf:
                found[Where.of(flow[i], t)] = (flow[i].seq, nan, inf)
    return found


def _backward(flow: Sequence[CallRecord]) -> dict[Where, tuple[int, int, int]]:
    """Where a NaN or Inf first shows in the backward pass, when the forward had none.

    Gradients run from the last call to the first: the last call in flow order whose output
    gradient is non-finite is where it is first seen; a module whose parameters' gradients are
    non-finite while its output gradients are finite made them itself.
    """
    found: dict[Where, tuple[int, int, int]] = {}
    for call in reversed(flow):
        grads = [t for t in call.grads if t.role == "grad"]
        if any(sum(nonfinite(t)) for t in grads):
            for t in grads:
                nan, inf = nonfinite(t)
                if nan or inf:
                    found[Where.of(call, t)] = (call.seq, nan, inf)
            break
    for call in flow:
        if any(sum(nonfinite(t)) for t in call.grads if t.role == "grad"):
            continue
        for t in call.grads:
            nan, inf = nonfinite(t)
            if t.role == "param_grad" and (nan or inf):
                found[Where.of(call, t)] = (call.seq, nan, inf)
    return found


def check_nan(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding]:
    hits: dict[Where, list[tuple[int, int]]] = {}
    counts: dict[tuple[Where, int], tuple[int, int]] = {}
    flagged = [step for step in records.steps if records.facts[step].nonfinite]
    for step, flow in records.flows_at(flagged):
        made = _forward(flow)
        if not made:
            made = _backward(flow)
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
