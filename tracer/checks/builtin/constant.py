"""``constant-output``: a layer whose output holds one value everywhere, at every checked step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from tracer.checks.builtin.layers import Key, calls, dead_stat
from tracer.checks.builtin.spans import Span, Where, finding, layer_name, step_text
from tracer.checks.findings import Finding, Note
from tracer.checks.rules import Rule, Threshold
from tracer.checks.view import RunRecords
from tracer.records import CallRecord, TensorRecord


def is_constant(tensor: TensorRecord) -> bool:
    """A tensor of more than one value, all finite and equal (zero spread)."""
    if not tensor.is_tensor or tensor.dtype == "bool":
        return False
    stats = tensor.stats
    low, high = stats.get("min"), stats.get("max")
    return (
        stats.get("numel", 0) > 1
        and low is not None
        and low == high
        and not stats.get("nan_count")
        and not stats.get("inf_count")
    )


def _any_constant(tensors: Sequence[TensorRecord]) -> bool:
    for t in tensors:
        stats = t.stats
        # the quick test first: most outputs have a spread
        if stats.get("min") == stats.get("max") and is_constant(t):
            return True
    return False


def _spread_inputs(call: CallRecord) -> bool:
    """Whether any of the call's inputs varies (or it had none: it made its output itself)."""
    ins = [t for t in call.inputs if t.is_tensor and t.dtype != "bool"]
    return not ins or not all(is_constant(t) for t in ins)


def _made(flow: Sequence[CallRecord], records: RunRecords) -> dict[Where, tuple[int, float]]:
    """Constant outputs of one step made where they are seen: not passed on from a constant
    input, not a container's whose inner call made it, not a dead ReLU (``dead-units``' own)."""
    stuck = {i for i, call in enumerate(flow) if _any_constant(call.outputs)}
    found: dict[Where, tuple[int, float]] = {}
    for i in sorted(stuck):
        call = flow[i]
        end = i + 1
        while end < len(flow) and flow[end].depth > call.depth:
            end += 1
        if not _spread_inputs(call) or any(j in stuck for j in range(i + 1, end)):
            continue
        module = records.module_records.get(call.module)
        dead = call.kind == "module" and dead_stat(call.type, module.extra_repr if module else "")
        for t in call.outputs:
            if is_constant(t) and not (dead and t.stats["min"] == 0):
                found[Where.of(call, t)] = (call.seq, t.stats["min"])
    return found


def check_constant(records: RunRecords, limits: Mapping[str, float]) -> Iterator[Finding | Note]:
    ran: dict[Key, list[int]] = {}
    made: dict[Where, list[tuple[int, int, float]]] = {}
    for (step, _), (key, _, _) in calls(records).items():
        ran.setdefault(key, []).append(step)
    flat = [step for step in records.steps if records.facts[step].flat]
    for step, flow in records.flows_at(flat):
        for where, (seq, value) in _made(flow, records).items():
            made.setdefault(where, []).append((step, seq, value))
    needed = int(limits["min_steps"])
    if len(records.steps) < needed:
        yield Note(f"needs {needed} checked steps, the check has {len(records.steps)}")
        return
    for where, points in made.items():
        steps = ran[where.module, where.call_index, where.kind, where.op]
        if len(points) < max(needed, len(steps)):
            continue  # it varied at some checked step
        first, last = points[0], points[-1]
        span = Span(first[0], last[0], first[1])
        yield finding(
            "constant-output",
            "warning",
            where,
            span,
            f"{layer_name(where)}'s {where.role} {where.slot} is {first[2]:.6g} everywhere at "
            f"every checked step ({step_text(span.first, span.until)}): the layer is stuck",
            {"value": first[2]},
        )


RULE = Rule(
    name="constant-output",
    severity="warning",
    summary=(
        "a layer whose output has zero spread at every checked step, while its input varies "
        "(layers that only pass a constant on, and dead ReLUs, are left to other findings)"
    ),
    check=check_constant,
    thresholds=(
        Threshold("min_steps", 2.0, "checked steps needed before a layer counts as stuck", min=1),
    ),
)
